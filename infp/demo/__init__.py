"""Live full-duplex demo: the avatar listens to the user's microphone and speaks with the agent's voice.

``live``: the real-time loop (audio clock, agent voice, late-frame dropping, quality ladder, recording);
``simulate``: the same loop paced from files; ``server``: the local web server and page;
``browser``: a small Chrome DevTools Protocol driver (end-to-end tests, screenshots).
The WebSocket protocol is documented in docs/PROTOCOL.md.
"""
