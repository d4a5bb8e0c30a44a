"""Load every page of the built book in headless Chromium and check what a reader sees.

Fails (exit 1, one line per problem) when a page shows raw TeX after MathJax ran, a MathJax
error, a broken image, a figure without a caption or a table wider than the content column, or
when a notebook's execution failed during the build (``_build/html/reports/*.err.log``).

Usage: ``.venv/bin/python .ci/check_book.py [_build/html]``.  Needs Debian's ``chromium`` and the
``playwright`` Python package (no browser download: the system Chromium is used).
"""
from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

PAGE_CHECKS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const column = article.clientWidth;
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER', 'KBD']);
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const tex = /(\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|mathrm|mathbf|top|sum|theta|hat|tilde|bar|nabla|partial|left|right|cdot)\b)/;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    let el = node.parentElement, skipped = false;
    while (el && el !== article) { if (skip.has(el.tagName) || el.classList.contains('highlight')) { skipped = true; break; } el = el.parentElement; }
    if (!skipped && tex.test(node.textContent)) {
      problems.push('raw TeX: ' + node.textContent.trim().slice(0, 80));
    }
  }
  for (const err of article.querySelectorAll('mjx-merror, [data-mjx-error]')) {
    problems.push('MathJax error: ' + (err.getAttribute('data-mjx-error') || err.textContent).slice(0, 80));
  }
  for (const img of article.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) problems.push('broken image: ' + img.getAttribute('src'));
    const fig = img.closest('figure');
    if (!fig || !fig.querySelector('figcaption')) problems.push('figure without caption: ' + img.getAttribute('src'));
    if (img.getBoundingClientRect().width > column + 1) problems.push('image wider than the column: ' + img.getAttribute('src'));
  }
  for (const eq of article.querySelectorAll('mjx-container[display="true"]')) {
    const box = eq.firstElementChild ? eq.firstElementChild.getBoundingClientRect().width : 0;
    if (box > column + 1) problems.push(`equation wider than the column (${Math.round(box)} px > ${column} px): ` + (eq.querySelector('mjx-assistive-mml') || eq).textContent.slice(0, 50));
  }
  for (const table of article.querySelectorAll('table')) {
    const width = table.getBoundingClientRect().width;
    if (width > column + 1) {
      problems.push(`table wider than the column (${Math.round(width)} px > ${column} px): ` + (table.innerText || '').trim().slice(0, 60).replace(/\s+/g, ' '));
    }
  }
  return problems;
}
"""


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def execution_failures(root: Path) -> list[str]:
    """Notebooks whose execution failed in the build (Jupyter Book leaves an .err.log)."""
    return [f"notebook execution failed: {log.name}" for log in sorted((root / "reports").glob("*.err.log"))]


def check(root: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems = execution_failures(root)
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        return problems + ["chromium not found: apt-get install chromium"]
    server, base = _serve(root)
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                   if not {"_static", "_sources", "reports", "_modules"} & set(p.parts)
                   and p.as_posix() != (root / "index.html").as_posix()   # a redirect
                   and p.name not in ("search.html", "genindex.html", "py-modindex.html"))
    try:
        with sync_playwright() as play:
            browser = play.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name in pages:
                page.goto(f"{base}/{name}", wait_until="load")
                found = page.evaluate(PAGE_CHECKS)
                problems += [f"{name}: {p}" for p in found]
                print(f"{name}: {'ok' if not found else f'{len(found)} problem(s)'}")
            browser.close()
    finally:
        server.shutdown()
    return problems


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    if not (root / "index.html").is_file():
        print(f"no built book at {root}: run `make book` first", file=sys.stderr)
        return 1
    problems = check(root)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"book check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
