"""A learner's JupyterLab in a real browser, for the tests: a JupyterLab server on a copy of
course/ as `make lab` starts it (learner tools, answers file, smoke profile), and headless
Chromium driven by selenium. `lab()` yields (server URL, token, folder); `browser()` a driver.

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver;
.ci/run installs them) and selenium (the `dev` extra).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def available() -> str | None:
    """None when a browser test can run here, else why not."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e .[dev])"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab(folder: Path, answers: Path | None = None, timeout: float = 90.0):
    """JupyterLab serving `folder` (a copy of course/, with its .jupyter learner config)."""
    port, token = _free_port(), "workbook-browser-test"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "WORKBOOK_PROGRESS", "MPLBACKEND")}
    env.update(JUPYTER_CONFIG_PATH=str(folder / ".jupyter"), WORKBOOK_PROFILE="smoke", WORKBOOK_OFFLINE="1",
               JUPYTER_RUNTIME_DIR=str(folder.parent / "runtime"), HOME=str(folder.parent / "home"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    if answers is not None:
        env["WORKBOOK_ANSWERS"] = str(answers)
    (folder.parent / "home").mkdir(exist_ok=True)
    log = open(folder.parent / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False", "--allow-root"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (folder.parent / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def course_copy(dest: Path) -> Path:
    """What a learner has: the course folder (notebooks, workbook, learner config)."""
    shutil.copytree(REPO / "course", dest, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return dest


@contextlib.contextmanager
def browser(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 120.0, poll: float = 0.25, what: str = "condition"):
    """The first truthy value of condition(driver) within timeout, else TimeoutError."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(Exception):
            value = condition(driver)
            if value:
                return value
        time.sleep(poll)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def run_all(driver) -> None:
    """Run > Run All Cells, as a learner does."""
    from selenium.webdriver.common.by import By

    menu = wait_for(driver, lambda d: next(e for e in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                                           if e.text == "Run"), what="the Run menu")
    menu.click()
    item = wait_for(driver, lambda d: d.find_element(
        By.CSS_SELECTOR, 'li.lm-Menu-item[data-command="runmenu:run-all"]'), what="Run All Cells")
    item.click()


def busy_cells(driver) -> int:
    """How many cells show the [*] prompt (running or queued)."""
    from selenium.webdriver.common.by import By

    return sum("[*]" in e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-InputArea-prompt"))


def ran_cells(driver) -> int:
    """How many cells show an execution count ([1]:, [2]:, ...)."""
    import re

    from selenium.webdriver.common.by import By

    return sum(bool(re.search(r"\[\d+\]", e.text)) for e in driver.find_elements(By.CSS_SELECTOR, ".jp-InputArea-prompt"))


def scroll_to(driver, selector: str, containing: str = "", timeout: float = 60.0) -> str:
    """Scroll the first element matching selector (and holding `containing` in its text) to the
    middle of the window; return its text. Found and scrolled in one script call, so an output
    that JupyterLab re-renders meanwhile (a progress bar updating) cannot go stale in between."""
    script = """
        const el = [...document.querySelectorAll(arguments[0])].find(e => e.textContent.includes(arguments[1]));
        if (!el) return null;
        el.scrollIntoView({block: 'center'});
        return [el.textContent];  // a list: truthy when found, even with no text (a progress bar)"""
    return wait_for(driver, lambda d: d.execute_script(script, selector, containing), timeout=timeout,
                    poll=0.1, what=f"{selector} holding {containing!r}")[0]
