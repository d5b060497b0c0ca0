"""`deltahub admin ...` through Click's runner, on a real embedded hub in a temporary data directory.

Push/pull against a real `deltahub serve` process are in test_transfer.py.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from service.accounts import AccountAdmin
from service.cli import cli
from service.tokens import CatalogTokenStore
from storage.app.gitattributes import MODEL_GITATTRIBUTES
from storage.app.hub import Hub
from storage.catalog import jobs
from storage.catalog.models import FileObject, StoreObject, Tensor
from storage.settings import load_settings
from tests.hubs import ingest_all, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.ingest import ingest_file


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no DELTAHUB_* from the developer's shell."""
    import os

    for key in [k for k in os.environ if k.startswith("DELTAHUB_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def hub(data_dir: Path) -> Iterator[Hub]:
    """The same deployment the CLI opens with --data-dir: SQLite and objects under the data directory."""
    hub = Hub.from_settings(load_settings(data_dir=data_dir), migrate=True)
    yield hub
    hub.engine.dispose()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push_family(hub: Hub) -> dict[str, bytes]:
    """A base and a fine-tune that declares it (config `_name_or_path`), both stored."""
    base_w = make_weights(1)
    files = {
        "base": to_safetensors(base_w),
        "tuned": to_safetensors(finetune(base_w, 2, frozen=("embeddings.weight",))),
        "config": b'{"_name_or_path": "org/base", "hidden_size": 64}',
    }
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": files["base"]}))
    ingest_all(hub, push(hub, "org/tuned", {"model.safetensors": files["tuned"], "config.json": files["config"]}))
    return files


def test_token_create_list_revoke(hub: Hub, data_dir: Path) -> None:
    created = run("admin", "token", "create", "ci-bot", "--write", "--data-dir", str(data_dir))
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("dh_") and " " not in token
    reader = run("admin", "token", "create", "viewer", "--data-dir", str(data_dir)).output.strip().splitlines()[-1]
    store = CatalogTokenStore(hub.session)
    assert store.verify(token) is not None and store.verify(token).can_write  # type: ignore[union-attr]
    assert store.verify(reader) is not None and not store.verify(reader).can_write  # type: ignore[union-attr]

    listed = run("admin", "token", "list", "--data-dir", str(data_dir))
    assert listed.exit_code == 0
    assert "ci-bot" in listed.output and "viewer" in listed.output
    assert token not in listed.output

    assert run("admin", "token", "revoke", "ci-bot", "--data-dir", str(data_dir)).exit_code == 0
    assert store.verify(token) is None
    assert store.verify(reader) is not None
    assert "revoked" in run("admin", "token", "list", "--data-dir", str(data_dir)).output
    again = run("admin", "token", "revoke", "ci-bot", "--data-dir", str(data_dir))
    assert again.exit_code == 3 and "ci-bot" in again.output
    duplicate = run("admin", "token", "create", "viewer", "--data-dir", str(data_dir))
    assert duplicate.exit_code == 4 and "already exists" in duplicate.output


def test_report_json_and_table(hub: Hub, data_dir: Path) -> None:
    files = push_family(hub)
    result = run("admin", "report", "--format", "json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"format", "logical_bytes", "physical_bytes", "saved_bytes", "savings", "families", "repositories"} <= set(
        report
    )
    # Both repositories also hold the .gitattributes of their initial commit.
    assert report["logical_bytes"] == sum(len(data) for data in files.values()) + 2 * len(MODEL_GITATTRIBUTES)
    assert 0 < report["physical_bytes"] < report["logical_bytes"]
    assert set(report["savings"]) == {
        "file_dedup", "tensor_dedup", "chunk_dedup", "delta_coding", "plain_coding", "overhead"
    }
    assert report["savings"]["tensor_dedup"] > 0  # the frozen embeddings
    assert report["savings"]["delta_coding"] > 0
    [family] = report["families"]
    assert family["base"]["sha256"] == sha(files["base"])
    assert family["base"]["locations"] == [{"repo_id": "org/base", "path": "model.safetensors"}]
    members = {m["sha256"]: m for m in family["members"]}
    assert members[sha(files["tuned"])]["base_sha256"] == sha(files["base"])
    assert {r["repo_id"] for r in report["repositories"]} == {"org/base", "org/tuned"}
    for row in report["repositories"]:
        assert {"files", "logical_bytes", "physical_bytes", "exclusive_bytes"} <= set(row)

    table = run("admin", "report", "--data-dir", str(data_dir))
    assert table.exit_code == 0
    for heading in (
        "Storage",
        "Savings by source",
        "Families",
        "Top repositories by physical",
        "Top repositories by exclusive",
    ):
        assert heading in table.output
    assert "org/tuned" in table.output and "delta coding" in table.output


def test_families_names_members_and_what_they_are_coded_against(hub: Hub, data_dir: Path) -> None:
    push_family(hub)
    result = run("admin", "families", "--data-dir", str(data_dir))
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if "org/tuned:model.safetensors" in line]
    assert rows and "org/base:model.safetensors" in rows[0]


def test_verify_passes_then_names_the_corrupted_file(hub: Hub, data_dir: Path) -> None:
    push_family(hub)
    healthy = run("admin", "verify", "--data-dir", str(data_dir))
    assert healthy.exit_code == 0, healthy.output
    assert "checked 4 files" in healthy.output  # three models and the shared .gitattributes
    with hub.session() as s:
        key = max(s.query(StoreObject).all(), key=lambda o: o.size).key
    stored = data_dir / "objects" / "objects" / key
    if not stored.exists():
        stored = next(p for p in (data_dir / "objects").rglob("*") if p.is_file() and p.as_posix().endswith(key))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x40
    stored.write_bytes(bytes(data))

    broken = run("admin", "verify", "--data-dir", str(data_dir))
    assert broken.exit_code == 5, broken.output
    assert "Traceback" not in broken.output
    assert "model.safetensors" in broken.output
    assert "org/base" in broken.output or "org/tuned" in broken.output
    assert "failed verification" in broken.output


def test_gc_dry_run_deletes_nothing(hub: Hub, data_dir: Path) -> None:
    unrelated = to_safetensors(make_weights(7))
    ingest_all(hub, push(hub, "org/gone", {"model.safetensors": unrelated}))
    push_family(hub)
    hub.delete_repo("org/gone")
    env = {"DELTAHUB_GC_GRACE_SECONDS": "0"}

    def snapshot() -> tuple[dict[str, bytes], int, int]:
        objects = {p.as_posix(): p.read_bytes() for p in (data_dir / "objects").rglob("*") if p.is_file()}
        with hub.session() as s:
            return objects, s.query(FileObject).count(), s.query(Tensor).count()

    before = snapshot()
    dry = run("admin", "gc", "--dry-run", "--data-dir", str(data_dir), env=env)
    assert dry.exit_code == 0 and "would delete" in dry.output
    assert snapshot() == before
    real = run("admin", "gc", "--data-dir", str(data_dir), env=env)
    assert real.exit_code == 0 and "deleted" in real.output
    after = snapshot()
    # The gone model's frames are freed; a pack it shared with a live file is rewritten smaller.
    stored_bytes = lambda objects: sum(map(len, objects.values()))  # noqa: E731
    assert after[1] == before[1] - 1 and stored_bytes(after[0]) < stored_bytes(before[0])
    assert run("admin", "verify", "--data-dir", str(data_dir)).exit_code == 0


def test_rebase_codes_a_file_against_its_declared_base(hub: Hub, data_dir: Path) -> None:
    base_w = make_weights(1)
    base, tuned = to_safetensors(base_w), to_safetensors(finetune(base_w, 2))
    ingest_all(hub, push(hub, "org/tuned", {"model.safetensors": tuned}))
    # The base arrives under settings that allowed no deltas, so it is stored plain and nothing was rebased.
    flat = Hub(load_settings(data_dir=data_dir, max_chain_depth=0), store=hub.store)
    push(hub, "org/base", {"model.safetensors": base})
    ingest_file(flat, sha(base))
    flat.engine.dispose()
    # A later commit declares the base (a model card), after the fine-tune was stored.
    push(hub, "org/tuned", {"model.safetensors": tuned, "README.md": b"---\nbase_model: org/base\n---\n"})
    physical = hub.stats()["physical_bytes"]

    planned = run("admin", "rebase", "--dry-run", "--data-dir", str(data_dir))
    assert planned.exit_code == 0 and "planned" in planned.output and "org/base:model.safetensors" in planned.output
    with hub.session() as s:
        assert s.get(FileObject, sha(tuned)).base_sha256 is None  # type: ignore[union-attr]
    done = run("admin", "rebase", "--data-dir", str(data_dir))
    assert done.exit_code == 0 and "rebased" in done.output, done.output
    with hub.session() as s:
        assert s.get(FileObject, sha(tuned)).base_sha256 == sha(base)  # type: ignore[union-attr]
    assert read_all(hub, sha(tuned)) == tuned
    run("admin", "gc", "--data-dir", str(data_dir), env={"DELTAHUB_GC_GRACE_SECONDS": "0"})
    assert hub.stats()["physical_bytes"] < physical
    assert "nothing to rebase" in run("admin", "rebase", "--data-dir", str(data_dir)).output


def test_requeue_retries_failed_ingest(hub: Hub, data_dir: Path) -> None:
    model = to_safetensors(make_weights(3))
    [job_id] = push(hub, "org/retry", {"model.safetensors": model})
    with hub.session() as s:
        jobs.start_job(s, job_id)
        jobs.fail_job(s, job_id, "store was down", final=True)
    assert hub.file_info(sha(model)).state == "failed"
    result = run("admin", "requeue", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert hub.file_info(sha(model)).state == "stored"
    assert read_all(hub, sha(model)) == model
    assert "nothing to requeue" in run("admin", "requeue", "--data-dir", str(data_dir)).output


def test_expected_errors_exit_with_their_code_and_no_traceback(tmp_path: Path, hub: Hub, data_dir: Path) -> None:
    missing = run("admin", "report", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 3 and "--data-dir" in missing.output
    assert not (tmp_path / "nowhere").exists()
    invalid = run("admin", "report", "--data-dir", str(data_dir), env={"DELTAHUB_STORE_BACKEND": "s3"})
    assert invalid.exit_code == 2 and "s3_bucket" in invalid.output
    no_broker = run("worker")
    assert no_broker.exit_code == 2 and "DELTAHUB_BROKER_URL" in no_broker.output
    bad_name = run("admin", "token", "create", " ", "--data-dir", str(data_dir))
    assert bad_name.exit_code == 2
    usage = run("admin", "verify", "--sample", "0", "--data-dir", str(data_dir))
    assert usage.exit_code == 2
    (tmp_path / "a-file").write_text("")
    unwritable = run("admin", "migrate", "--data-dir", str(tmp_path / "a-file" / "data"))
    assert unwritable.exit_code == 12 and "a-file" in unwritable.output
    for result in (missing, invalid, no_broker, bad_name, usage, unwritable):
        assert "Traceback" not in result.output and result.output.count("\n") < 10


def test_migrate_creates_a_catalog_other_commands_then_open(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert run("admin", "migrate", "--data-dir", str(fresh)).exit_code == 0
    assert (fresh / "catalog.sqlite3").exists()
    assert run("admin", "migrate", "--data-dir", str(fresh)).exit_code == 0  # idempotent
    report = run("admin", "report", "--format", "json", "--data-dir", str(fresh))
    assert report.exit_code == 0 and json.loads(report.output)["logical_bytes"] == 0


def test_the_documented_json_matches_the_report(hub: Hub, data_dir: Path) -> None:
    push_family(hub)
    report = json.loads(run("admin", "report", "--format", "json", "--data-dir", str(data_dir)).output)
    docs = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    documented = json.loads(docs.split("```json\n", 1)[1].split("```", 1)[0])

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return None

    assert shape(report) == shape(documented)


def test_gc_says_what_the_grace_period_holds_and_until_when(hub: Hub, data_dir: Path) -> None:
    ingest_all(hub, push(hub, "org/gone", {"model.safetensors": to_safetensors(make_weights(7))}))
    hub.delete_repo("org/gone")
    held = run("admin", "gc", "--dry-run", "--data-dir", str(data_dir))
    assert held.exit_code == 0, held.output
    line = " ".join(held.output.split())
    # The model and the repository's initial .gitattributes, both unreferenced now.
    assert "held by the grace period: 2 file(s)" in line and "DELTAHUB_GC_GRACE_SECONDS (3600 s)" in line
    freed = run("admin", "gc", "--dry-run", "--data-dir", str(data_dir), env={"DELTAHUB_GC_GRACE_SECONDS": "0"})
    # The held bytes are exactly what a GC after the grace period frees; it then holds nothing back.
    would = next(row for row in freed.output.splitlines() if "bytes" in row).split("│")[2].strip()
    assert f"2 file(s), {would} unreferenced" in line
    assert "held by the grace period" not in freed.output
    collectable = datetime.strptime(line.split("collectable by a gc from ")[1][:16], "%Y-%m-%d %H:%M")
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    assert abs((collectable - expected).total_seconds()) < 120


def test_serve_on_a_port_in_use_fails_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 13, result.output
    assert result.output.startswith("error: cannot listen on 127.0.0.1:") and result.output.count("\n") == 1
    assert "--port" in result.output and not (tmp_path / "data").exists()
    docs = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    assert "| 13 | `CannotListen` |" in docs


def test_help_texts_say_what_each_command_needs() -> None:
    def option_help(command: str, option: str) -> str:
        options = run(*command.split(), "--help").output.split("Options:", 1)[1]
        block = options.split(f"\n  {option}", 1)[1].split("\n  -", 1)[0]
        return " ".join(block.split())

    assert "push" not in option_help("pull", "--token") and "private" in option_help("pull", "--token")
    assert "write access" in option_help("push", "--token")
    for command in ("serve", "worker", "admin report"):
        assert "Embedded mode" not in option_help(command, "--data-dir")
        assert "working directory" in option_help(command, "--data-dir")
    assert "warn" in option_help("push", "--base")


def test_the_readme_quickstart_is_complete_for_a_new_user() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = "\n".join(line for line in quickstart.splitlines() if line.startswith("    "))
    assert "HF_HUB_DISABLE_XET" not in readme  # the unmodified client, Xet on (its default)
    assert "python3 -m venv" in commands
    install = next(line for line in commands.splitlines() if "pip install" in line)
    assert "transformers" in install and "torch" in install  # from_pretrained below needs them
    assert commands.index("create_repo(") < commands.index("upload_folder(")  # upload_folder needs the repo
    assert "working directory" in quickstart or "directory you start it from" in quickstart


def test_report_per_namespace_splits_physical_into_exclusive_and_shared(hub: Hub, data_dir: Path) -> None:
    """org holds a base and its fine-tune; eve copies the base: the base's bytes are shared, the fine-tune's
    delta is org's alone, and eve holds nothing alone."""
    files = push_family(hub)
    ingest_all(hub, push(hub, "eve/copy", {"model.safetensors": files["base"]}))
    AccountAdmin(hub.session).create_user("eve")
    AccountAdmin(hub.session).set_quota("eve", 10**6)
    report = json.loads(run("admin", "report", "--format", "json", "--data-dir", str(data_dir)).output)
    rows = {row["namespace"]: row for row in report["namespaces"]}
    assert set(rows) == {"org", "eve"}
    org, eve = rows["org"], rows["eve"]
    assert (org["kind"], org["repositories"], org["quota_bytes"]) == (None, 2, None)
    assert (eve["kind"], eve["repositories"], eve["quota_bytes"]) == ("user", 1, 10**6)
    assert eve["logical_bytes"] == len(files["base"]) + len(MODEL_GITATTRIBUTES) == hub.quotas.usage("eve")[0]
    assert org["logical_bytes"] == hub.quotas.usage("org")[0]
    for row in rows.values():
        assert row["exclusive_bytes"] + row["shared_bytes"] == row["physical_bytes"] > 0
    assert eve["exclusive_bytes"] == 0 and eve["shared_bytes"] == org["shared_bytes"] > 0
    assert org["exclusive_bytes"] > 0  # the fine-tune's delta frames
    totals = report["namespace_totals"]
    assert totals["shared_bytes"] == eve["shared_bytes"]  # counted once, not once per namespace
    assert totals["exclusive_bytes"] == org["exclusive_bytes"]
    assert totals["exclusive_bytes"] + totals["shared_bytes"] + totals["unattributed_bytes"] == report["physical_bytes"]
    assert 0 <= totals["unattributed_bytes"] < report["physical_bytes"] // 10  # pack headers only
    table = run("admin", "report", "--data-dir", str(data_dir)).output
    [eve_line] = [line for line in table.splitlines() if "│ eve " in line]
    assert "Namespaces" in table
    cells = [cell.strip() for cell in eve_line.split("│")[1:-1]]
    assert cells[:3] == ["eve", "user", "1"] and cells[4] == "976.6 KiB" and cells[7] == "0 B"
