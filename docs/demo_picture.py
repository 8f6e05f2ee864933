"""Regenerate docs/demo-thread.png, the README's picture of what Slack shows: one command,

    .venv/bin/python docs/demo_picture.py

runs `wabridge demo --html` (the real bridge against the stand-ins) and captures the page in headless
Chromium (Debian: `apt-get install chromium fonts-noto-color-emoji`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PICTURE = HERE / "demo-thread.png"
WIDTH, HEIGHT = 760, 900


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("chromium is not installed (apt-get install chromium fonts-noto-color-emoji)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="wabridge-picture-") as tmp:
        page = Path(tmp) / "thread.html"
        subprocess.run([sys.executable, "-m", "bot", "demo", "--recipients", "5", "--html", str(page)],
                       cwd=HERE.parent, check=True, stdout=subprocess.DEVNULL, timeout=300)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={PICTURE}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {PICTURE.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
