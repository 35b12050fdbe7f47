"""Networks, one per file: stage 1 (motion encoder, appearance, flow, decoder, discriminator, renderer)."""
