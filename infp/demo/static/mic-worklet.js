// Captures the microphone on the page's AudioContext (16 kHz) and posts blocks of `chunk` samples
// with the context frame of their first sample: the page's single audio clock.
class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = (options.processorOptions && options.processorOptions.chunk) || 640;
    this.buf = new Float32Array(this.chunk);
    this.fill = 0;
    this.first = -1; // context frame of buf[0]
  }
  process(inputs) {
    const input = inputs[0];
    const n = 128;
    const data = input && input.length ? input[0] : null; // silence when the source has no channel yet
    for (let i = 0; i < n; i++) {
      if (this.fill === 0) this.first = currentFrame + i;
      this.buf[this.fill++] = data ? data[i] : 0;
      if (this.fill === this.chunk) {
        this.port.postMessage({ frame: this.first, pcm: this.buf });
        this.buf = new Float32Array(this.chunk);
        this.fill = 0;
      }
    }
    return true;
  }
}
registerProcessor('mic-capture', MicCapture);
