"""PDF export: the report page printed to A4 by headless Chromium (the system binary) through Playwright."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from pathlib import Path

from .. import settings

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class ChromiumMissing(RuntimeError):
    """PDF export needs a Chromium binary (and the playwright package) that are not installed."""


_INSTALL_HINT = "install Debian's package with `apt-get install chromium`"


def find_chromium() -> str:
    """The Chromium binary: $FLOSS_CHROMIUM if set, else ``chromium`` on PATH, else /usr/bin/chromium.
    Raises ChromiumMissing, saying how to get one."""
    chosen = settings.get("FLOSS_CHROMIUM")
    if chosen:
        if os.path.isfile(chosen) and os.access(chosen, os.X_OK):
            return chosen
        raise ChromiumMissing(f"PDF export: FLOSS_CHROMIUM={chosen} is not an executable file; point it at a "
                              f"Chromium binary, or unset it and {_INSTALL_HINT}; HTML and zip exports work "
                              "without it")
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ChromiumMissing(f"PDF export needs Chromium: {_INSTALL_HINT} (or set FLOSS_CHROMIUM to a Chromium "
                          "binary); HTML and zip exports work without it")


def pdf_problem() -> str | None:
    """Why PDF export cannot work here (a message saying how to fix it), or None when it can."""
    try:
        find_chromium()
        import playwright.sync_api  # noqa: F401
    except ChromiumMissing as e:
        return str(e)
    except ImportError:
        return _NO_PLAYWRIGHT
    return None


_NO_PLAYWRIGHT = ("PDF export needs the playwright package: `pip install playwright` (the package only; it drives "
                  "the system Chromium, no `playwright install`); HTML and zip exports work without it")


def html_to_pdf(html: str, *, timeout_s: float = 60.0) -> bytes:
    """Print a report page to PDF (A4) with headless Chromium through Playwright, after every plotly
    chart has rendered. All network requests are refused: a report fetches nothing.

    Raises ChromiumMissing (with how to install it) where no Chromium or no playwright package is found."""
    exe = find_chromium()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ChromiumMissing(_NO_PLAYWRIGHT) from None
    # Playwright's sync API refuses to run in a thread with a running asyncio loop (e.g. inside some
    # servers): a fresh thread never has one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_print_pdf, html, exe, timeout_s).result()


def _print_pdf(html: str, exe: str, timeout_s: float) -> bytes:
    from playwright.sync_api import sync_playwright

    n_charts = html.count('class="plotly-graph-div"')
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                           else route.abort())
                page.goto(page_path.as_uri(), wait_until="load", timeout=timeout_s * 1000)
                page.wait_for_function(
                    "n => { const g = document.querySelectorAll('.plotly-graph-div');"
                    " return g.length === n && [...g].every(d => d._fullLayout && d.querySelector('.main-svg')); }",
                    arg=n_charts, timeout=timeout_s * 1000)
                page.emulate_media(media="print")
                return page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
            finally:
                browser.close()
