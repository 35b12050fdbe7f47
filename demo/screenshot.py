"""Screenshot of the live demo page in headless Chromium, a WAV file standing in for the microphone.

    python demo/screenshot.py [--out docs/images/demo_page.png] [--seconds 8] [--height 900] [-- extra infp demo options]

Starts `infp demo` on a free port, opens the page, lets the user's voice (hallo_3) play through the
fake microphone, starts the agent's voice (ditto.flac) and takes the picture while both talk. Prints the page's
frame rate at the end (its last 2 s) and over every 2-s window of the session (and per minute of a longer one): the
figure to judge the live demo's speed by, with the browser on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from infp.demo.browser import Chromium
from infp.io import read_audio
from infp.paths import REPO_ROOT


async def shoot(url: str, mic: Path, out: Path, seconds: float, height: int = 900) -> dict:
    async with Chromium(fake_mic=mic, window=(1280, height)) as browser:
        page = await browser.open(url + "/?autostart=1")
        await page.wait_for("demo.stats().framesWithPicture > 10", timeout=60)
        await asyncio.sleep(1.0)
        await page.evaluate("""(() => { for (const o of document.getElementById('files').options)
            o.selected = (o.value === 'ditto.flac'); document.getElementById('play').click(); return 1; })()""")
        # the page's frame rate over each 2-s window of the session (demo.stats().fps counts the last 2 s)
        rates, end = [], asyncio.get_running_loop().time() + seconds
        while (left := end - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(2.0, left))
            if left >= 2.0:
                rates.append(await page.evaluate("demo.stats().fps"))
        try:  # both voices on the meters, if the two still overlap
            await page.wait_for("demo.stats().states.slice(-1)[0].state === 'both'", timeout=20, interval=0.05)
        except TimeoutError:
            pass
        await page.screenshot(out)
        stats = await page.evaluate("demo.stats()")
        stats["window_fps"] = rates
        return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "images" / "demo_page.png")
    ap.add_argument("--seconds", type=float, default=8.0, help="how long the session runs before the picture")
    ap.add_argument("--height", type=int, default=900, help="browser window height in pixels (the page's full length: ~1400)")
    ap.add_argument("demo_args", nargs="*", help="extra options for infp demo (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speech = read_audio(REPO_ROOT / "data" / "samples" / "audio" / "hallo_3.flac")[0]
        mic = Path(tmp) / "mic.wav"
        sf.write(str(mic), np.concatenate([np.zeros(8000, np.float32), speech]), 16000, subtype="PCM_16")
        proc = subprocess.Popen([sys.executable, "-m", "infp.cli", "demo", "--port", "0", "--record-dir", tmp,
                                 *args.demo_args], stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            m = re.search(r"(http://[^/]+)/", line)
            if not m:
                sys.exit(f"infp demo did not start: {line}")
            stats = asyncio.run(shoot(m.group(1), mic, args.out, args.seconds, args.height))
        finally:
            proc.terminate()
            proc.wait(10)
    srv = stats["server"] or {}
    print(f"wrote {args.out}: page {stats['fps']:.1f} fps, latency p50/p95 {stats['latencyP50']:.0f}/"
          f"{stats['latencyP95']:.0f} ms; server {srv.get('size')}x{srv.get('size')}, {srv.get('steps')} steps"
          f"{', ' + srv['note'] if srv.get('note') else ''}")
    if srv.get("frames"):
        print(f"server: {srv['delivered']} of {srv['frames']} frames delivered, {srv['dropped']} not rendered to stay on "
              f"time, {srv['late']} late")
    rates = stats["window_fps"][2:]  # the first 4 s: the agent's voice starting, the quality ladder settling
    if rates:
        print(f"page fps over the session's 2-s windows after the first 4 s: mean {np.mean(rates):.1f}, "
              f"min {np.min(rates):.1f}, max {np.max(rates):.1f} ({len(rates)} windows)")
    per_minute = [float(np.mean(stats["window_fps"][i:i + 30])) for i in range(0, len(stats["window_fps"]) - 29, 30)]
    if len(per_minute) > 1:
        print("page fps per minute: " + ", ".join(f"{r:.1f}" for r in per_minute))


if __name__ == "__main__":
    main()
