"""End-to-end fixtures. These tests need root, Asterisk (deploy/asterisk.sh provision) and
SIPp: `make test` installs all of it. They fail, rather than skip, when a part is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack import PROJECT, Stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def prerequisites() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("end-to-end tests run as root (chroot, pcap play)")
    if shutil.which("sipp") is None:
        problems.append("sipp is missing (apt-get install sip-tester, or run `make test`)")
    mode = subprocess.run([str(PROJECT / "deploy" / "asterisk.sh"), "mode"],
                          capture_output=True, text=True)
    if mode.returncode != 0:
        problems.append(mode.stderr.strip())
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory, prerequisites) -> Path:
    """Prompts rendered once per test run and copied into every stack's data folder."""
    stack = Stack(tmp_path_factory.mktemp("prompts"))
    stack.write_config([])
    stack.setup()
    return stack.data / "prompts"


def make_stack(tmp_path_factory, prompt_cache: Path, operators: list[str],
               extra: str = "", journey: dict | None = None,
               shared_phone: bool = False) -> Stack:
    stack = Stack(tmp_path_factory.mktemp("stack"))
    stack.write_config(operators, extra, journey, shared_phone=shared_phone)
    stack.setup(prompt_cache)
    stack.start_asterisk()
    return stack


def support_desk_stack(tmp_path_factory, prompt_cache: Path, extra: str = "") -> Stack:
    """The example journey with the controller running and op1001 logged in to the support
    desk (the 'other' entry's desk): the set-up most end-to-end modules start from."""
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       extra)
    stack.start_controller()
    stack.login("op1001", "support")
    return stack
