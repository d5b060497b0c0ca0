"""The real `git` and `git-lfs` clients, each in its own HOME: credentials (the store helper, as a user
sets them up) or none (anonymous), the LFS filters installed, no system config, never a prompt."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit


class Git:
    def __init__(self, home: Path, url: str, token: str | None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C", "GIT_ASKPASS": "/bin/false",
        }
        self.run("config", "--global", "user.name", "Ada Lovelace", cwd=home)
        self.run("config", "--global", "user.email", "ada@example.org", cwd=home)
        self.run("config", "--global", "init.defaultBranch", "main", cwd=home)
        self.run("lfs", "install", "--skip-repo", cwd=home)
        if token is not None:
            parts = urlsplit(url)
            (home / ".git-credentials").write_text(f"{parts.scheme}://user:{token}@{parts.netloc}\n")
            self.run("config", "--global", "credential.helper", "store", cwd=home)

    def run(self, *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["git", *args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def out(self, *args: str, cwd: Path) -> str:
        return self.run(*args, cwd=cwd).stdout.strip()
