"""End to end in a real browser: headless Chromium opens the demo page with a WAV file as its microphone.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with that reason when it is absent.
The server runs the starter weights, as a user would start it (``infp demo``).
"""

import asyncio
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from infp.demo.browser import Chromium, find_chromium
from infp.io import read_audio, read_frames

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory, samples):
    """The fake microphone (looped by Chromium): 1 s quiet, 5 s of the user talking, 6 s quiet."""
    speech = read_audio(samples / "audio" / "hallo_3.flac")[0][: 5 * 16000]
    x = np.concatenate([np.zeros(16000), speech, np.zeros(6 * 16000)]).astype(np.float32)
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(str(path), x, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    rec = tmp_path_factory.mktemp("recordings")
    proc = subprocess.Popen([sys.executable, "-m", "infp.cli", "demo", "--port", "0", "--record-dir", str(rec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert m, line + proc.stderr.read()
    yield {"url": m.group(1), "proc": proc, "rec": rec}
    proc.terminate()
    proc.wait(10)


SELECT_AND_PLAY = """(() => {
  for (const o of document.getElementById('files').options) o.selected = (o.value === 'ditto.flac');
  document.getElementById('play').click();
  return demo.ctx.currentTime;
})()"""


def test_page_shows_the_avatar_listening_then_speaking(demo_server, mic_wav, tmp_path):
    async def scenario():
        async with Chromium(fake_mic=mic_wav) as browser:
            page = await browser.open(demo_server["url"] + "/?autostart=1")
            # frames arrive and are drawn
            await page.wait_for("demo.stats().framesWithPicture > 10 && demo.stats().shownFrame > 0", timeout=60)
            assert await page.evaluate("demo.stats().micOk") is True
            # the fake microphone talks: the avatar listens
            await page.wait_for("demo.stats().states.some(s => s.state === 'listening')", timeout=30)
            # the agent's file plays: its voice comes back and the avatar speaks
            t_play = await page.evaluate(SELECT_AND_PLAY)
            await page.wait_for(f"demo.stats().states.some(s => s.state === 'speaking' && s.t > {t_play})", timeout=40)
            states = await page.evaluate("demo.stats().states")
            first_listen = min(s["t"] for s in states if s["state"] == "listening")
            first_speak = min(s["t"] for s in states if s["state"] == "speaking")
            assert first_listen < t_play < first_speak
            # latency is measured and shown; the agent's audio reached the page
            await page.wait_for("demo.stats().latencyP95 !== null", timeout=10)
            stats = await page.evaluate("demo.stats()")
            text = await page.evaluate("document.getElementById('latency').textContent")
            assert re.fullmatch(r"\d+ / \d+ ms", text), text
            assert 0 < stats["latencyP50"] <= stats["latencyP95"] < 2000
            assert stats["audioChunks"] > 10 and stats["server"]["delay_ms"] == 250
            meter = await page.evaluate("document.getElementById('lvl-self').style.width")
            assert meter.endswith("%")
            # record two seconds from the page
            await page.evaluate("document.getElementById('record').click()")
            await page.wait_for("document.getElementById('record').classList.contains('recording')", timeout=10)
            await asyncio.sleep(2.0)
            await page.evaluate("document.getElementById('record').click()")
            saved = await page.wait_for("demo.stats().recordings[0]", timeout=30)
            # a second page at the same time is refused with a clear message; the first one goes on
            second = await browser.open(demo_server["url"] + "/?autostart=1")
            busy = await second.wait_for("demo.busy && document.getElementById('status').textContent", timeout=20)
            before = await page.evaluate("demo.stats().received")
            await asyncio.sleep(1.5)
            after = await page.evaluate("demo.stats().received")
            await page.screenshot(tmp_path / "page.png")
            return saved, busy, before, after, browser.console_errors()

    saved, busy, before, after, errors = asyncio.run(scenario())
    assert "one avatar at a time" in busy and "Try again" in busy
    assert after > before + 20  # the first session kept receiving frames
    assert demo_server["proc"].poll() is None  # the server is up
    assert not errors, errors
    path = demo_server["rec"] / saved["name"]
    assert saved["frames"] >= 40 and len(read_frames(path)) == saved["frames"]
    assert (tmp_path / "page.png").stat().st_size > 10_000
