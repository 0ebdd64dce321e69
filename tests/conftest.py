import os

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# No persistent compilation cache in tests (twnn_jax/compile_cache.py): nothing read from or written to the
# user's home; a test about the cache sets its own directory.
os.environ["TWNN_COMPILE_CACHE"] = "0"

# Every test has exactly one kind, selectable with `-m` (registered in pyproject.toml):
#   unit     library code in this process (`-m unit` for a quick run)
#   e2e      a whole command or app: the CLI, the dashboard script under AppTest, real subprocesses
#   browser  the dashboard server driven in a real Chromium (`-m "not browser"` where none is installed)
# A test marked with a kind keeps it; otherwise its file's kind below applies, and `unit` when none is listed.
KINDS = ("unit", "e2e", "browser")
FILE_KIND = {
    "test_cli.py": "e2e",
    "test_dashboard_apptest.py": "e2e",
    "test_dashboard_browser.py": "browser",
    "test_experiment.py::test_run_paper_quick": "e2e",
}


def pytest_collection_modifyitems(items):
    for item in items:
        marked = [kind for kind in KINDS if item.get_closest_marker(kind)]
        if len(marked) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(marked)}; a test has one kind")
        if not marked:
            name = item.path.name
            function = f"{name}::{getattr(item, 'originalname', item.name)}"
            item.add_marker(FILE_KIND.get(function) or FILE_KIND.get(name) or "unit")


# The real-browser tests (pytest-playwright's `browser` / `page` fixtures) drive Debian's Chromium: browsers
# cannot be downloaded here. One Playwright for the whole session, shared by every module that needs one.
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1000}}
