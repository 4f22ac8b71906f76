"""Commits a directory and pushes it with the stock `git`, credentials passed per command.

The credentials go in an `http.extraHeader` set through `GIT_CONFIG_COUNT` /
`GIT_CONFIG_KEY_0` / `GIT_CONFIG_VALUE_0`: they are not in the remote URL, not
in `.git/config`, not on the command line (so not in `ps`), and git does not
print them. Whatever git prints is still scrubbed by the redactor before it
reaches an error message.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import PltfError
from ..redact import Redactor
from .base import GitAuthor

# Enough of the environment for git to run, and nothing of ours (tokens live in
# PLTF_* variables, which git has no business seeing).
_KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def git_environment(author: GitAuthor | None = None, authorization: str | None = None) -> dict[str, str]:
    env = {key: os.environ[key] for key in _KEPT_ENVIRONMENT if key in os.environ}
    env.update(
        {
            # No system or user config: a credential helper or `url.insteadOf` on the
            # host must not change what we push or where.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true",
        }
    )
    if author is not None:
        env.update(
            GIT_AUTHOR_NAME=author.name,
            GIT_AUTHOR_EMAIL=author.email,
            GIT_COMMITTER_NAME=author.name,
            GIT_COMMITTER_EMAIL=author.email,
        )
    if authorization is not None:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader")
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: {authorization}"
    return env


def git(
    args: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Runs the stock git with its output captured, in `git_environment()` unless given another.

    The one place pltf starts git. It raises subprocess.TimeoutExpired and leaves a non-zero exit to the
    caller: what a failure means (a 502, a missing file, "no"), each caller knows.
    """
    command = ["git", *(["--git-dir", str(git_dir)] if git_dir is not None else []), *args]
    with open(stdin if stdin is not None else os.devnull, "rb") as feed:
        return subprocess.run(
            command,
            cwd=cwd,
            env=git_environment() if env is None else env,
            stdin=feed,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def as_text(done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )


def run_git(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    redact: Redactor,
    what: str,
    stdin: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`git`, with a timeout or a failure as the PltfError a run reports (504, 502), scrubbed; `stdin` is a
    file fed to it unchanged."""
    try:
        done = as_text(git(args, cwd=cwd, env=env, timeout=timeout, stdin=stdin))
    except subprocess.TimeoutExpired:
        raise PltfError(f"{what} took longer than {timeout:g} s", 504, "git_timeout") from None
    if done.returncode != 0:
        detail = redact((done.stderr or done.stdout).strip())
        raise PltfError(f"{what} failed: {detail[-1500:]}", 502, "git_failed")
    return done


def commit_and_push(
    source_dir: Path,
    remote_url: str,
    branch: str,
    message: str,
    author: GitAuthor,
    redact: Redactor,
    timeout: float,
    authorization: str | None = None,
) -> str:
    """Makes `source_dir` a one-commit repository and pushes it to `branch` of `remote_url`; returns the sha.

    `remote_url` is an HTTPS URL without credentials, a file:// URL or a path.
    """
    if authorization is not None:
        # Basic credentials are base64 of the token; that string is a secret too.
        redact.add([authorization, authorization.split(" ", 1)[-1]])
    local_env = git_environment(author)
    run_git(["init", "--quiet", "-b", branch], source_dir, local_env, timeout, redact, "git init")
    run_git(["add", "--all", "."], source_dir, local_env, timeout, redact, "git add")
    run_git(
        ["commit", "--quiet", "--no-verify", "--allow-empty", "-m", message],
        source_dir,
        local_env,
        timeout,
        redact,
        "git commit",
    )
    sha = run_git(["rev-parse", "HEAD"], source_dir, local_env, timeout, redact, "git rev-parse").stdout.strip()
    push_env = git_environment(author, authorization)
    run_git(
        ["push", "--quiet", "--porcelain", remote_url, f"HEAD:refs/heads/{branch}"],
        source_dir,
        push_env,
        timeout,
        redact,
        f"git push to {remote_url}",
    )
    return sha
