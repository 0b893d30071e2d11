"""The conformance suite can fail: each deliberately broken driver fails the tests meant to catch it.

One pytest run (in a subprocess, as a driver author would run it) holds a
directory per broken driver from ``conformance_broken_drivers``: a
``conftest.py`` that overrides ``jobs_driver_factory`` to build that driver
in code, and test files that import the chosen conformance tests. A control
directory runs the same tests on the healthy memory driver, so a failure is
the driver's, not the harness's. Further runs check the ``jobs_xfail``
setting.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import conformance_broken_drivers
import pytest

HERE = Path(__file__).parent
SUITE = "jobs_core.testing.conformance"

#: broken driver -> conformance tests that must fail ("module::test", params optional).
CATCHES: dict[str, list[str]] = {
    "LeasesNeverExpire": [
        "test_leases::test_an_expired_lease_makes_the_message_available_again",
        "test_leases::test_a_crashed_workers_message_is_redelivered_to_another_worker",
        "test_leases::test_extend_after_the_lease_was_lost_returns_false",
        "test_reserve::test_each_delivery_gets_its_own_receipt",
    ],
    "LeasesNotExclusive": [
        "test_leases::test_concurrent_reservers_never_share_a_live_lease",
        "test_reserve::test_a_reserved_message_is_not_handed_out_again_while_leased",
    ],
    "RetryLosesTheMessage": [
        "test_retry_fail::test_retry_counts_an_attempt_and_records_the_error",
        "test_retry_fail::test_each_retry_counts_one_more_attempt",
    ],
    "RetryForgetsTheAttempt": [
        "test_retry_fail::test_retry_counts_an_attempt_and_records_the_error",
        "test_retry_fail::test_each_retry_counts_one_more_attempt",
    ],
    "PriorityIgnored": [
        "test_ordering::test_higher_priority_is_reserved_first",
        "test_ordering::test_a_later_higher_priority_message_overtakes_waiting_ones",
        "test_ordering::test_priority_applies_within_a_batch_reservation",
        "test_enqueue::test_message_fields_round_trip",
    ],
    "DelayIgnored": [
        "test_delay::test_a_delayed_message_is_not_delivered_before_it_is_due",
        "test_delay::test_a_delayed_message_does_not_hold_up_due_ones",
        "test_stats_admin::test_stats_count_delayed",
    ],
    "UniqueIgnored": [
        "test_unique::test_a_duplicate_is_dropped_while_the_first_is_pending",
        "test_unique::test_a_duplicate_is_dropped_while_the_first_is_reserved",
        "test_unique::test_a_duplicate_within_one_batch_is_dropped",
    ],
    "PurgeLeavesMessages": [
        "test_stats_admin::test_purge_removes_waiting_messages_and_counts_them",
        "test_stats_admin::test_purge_removes_delayed_messages_too",
    ],
    "StatsMiscount": [
        "test_stats_admin::test_stats_count_reserved",
    ],
    "PruneMiscounts": [
        "test_stats_admin::test_prune_removes_old_records_and_returns_the_real_count",
        "test_stats_admin::test_prune_keeps_records_younger_than_the_cutoff",
    ],
    "StaleAckHonoured": [
        "test_leases::test_a_stale_receipt_is_ignored[ack]",
    ],
    "AckNotIdempotent": [
        "test_leases::test_ack_is_idempotent",
    ],
    "ExtendIgnoresLostLease": [
        "test_leases::test_extend_after_the_lease_was_lost_returns_false",
    ],
    "FailDropsTheJob": [
        "test_retry_fail::test_fail_keeps_the_job_in_the_failed_store_with_the_error",
        "test_retry_fail::test_retry_failed_puts_the_job_back_with_its_attempts_reset",
        "test_stats_admin::test_stats_count_failed",
    ],
    "BulkEnqueueTruncates": [
        "test_enqueue::test_bulk_enqueue_of_a_thousand_messages_delivers_each_exactly_once",
    ],
    "SilentlyUnsupportedPurge": [
        "test_lifecycle::test_an_undeclared_capability_raises_unsupported_operation[purge]",
    ],
    "SkipsValidation": [
        "test_bad_input::test_an_oversized_payload_raises_and_stores_nothing",
        "test_bad_input::test_enqueue_to_an_invalid_queue_name_raises_invalid_name",
    ],
    "PruneStopsAtTenThousand": [
        "test_stats_admin::test_prune_of_more_than_ten_thousand_finished_jobs_in_one_call",
    ],
    "EnqueueReplacesAnExistingId": [
        "test_enqueue::test_an_enqueue_reusing_an_unfinished_id_stores_nothing_and_returns_the_id",
        "test_enqueue::test_an_enqueue_reusing_the_id_of_a_delayed_or_retried_job_changes_nothing",
    ],
    "MalformedRecordsCrashReserve": [
        "test_bad_input::test_a_malformed_record_does_not_block_the_messages_behind_it",
        "test_bad_input::test_a_malformed_record_ends_in_the_failed_store_with_the_reason",
    ],
}

CONTROL = "MemoryDriver"

CONFTEST = """\
import uuid

import pytest

from {module} import {cls}


@pytest.fixture
def jobs_driver_factory():
    store = f"meta-{{uuid.uuid4().hex}}"
    built = []

    def make(**options):
        driver = {cls}(f"memory://{{store}}", **options)
        built.append(driver)
        return driver

    yield make
    for driver in built:
        driver.close()
"""


def _split(entry: str) -> tuple[str, str]:
    module, _, test = entry.partition("::")
    return module, test.split("[", 1)[0]


def _write_driver_dir(root: Path, cls: str, module: str, entries: list[str]) -> None:
    """A directory whose conftest builds ``cls`` and whose tests are ``entries``."""
    directory = root / cls
    directory.mkdir()
    (directory / "conftest.py").write_text(CONFTEST.format(module=module, cls=cls))
    tests: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        suite_module, test = _split(entry)
        tests[suite_module].add(test)
    for suite_module, names in tests.items():
        source = importlib.import_module(f"{SUITE}.{suite_module}")
        lines = [f"from {SUITE}.{suite_module} import {', '.join(sorted(names))}"]
        if hasattr(source, "pytestmark"):
            lines.append(f"from {SUITE}.{suite_module} import pytestmark")
        (directory / f"{suite_module}_{cls}.py").write_text("\n".join(lines) + "\n")


def _start(root: Path, *args: str) -> subprocess.Popen[str]:
    """Start the suite on the test files under ``root``, writing ``root/report.xml``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("JOBS_DRIVER_URL", None)
    env["JOBS_CONFORMANCE_TIMEOUT"] = "1.5"  # the memory driver answers at once
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        "--jobs-driver=memory://",
        f"--junitxml={root / 'report.xml'}",
        "-q",
        "--timeout=60",
        *args,
        str(root),
    ]
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait(root: Path, process: subprocess.Popen[str]) -> tuple[int, str, ET.Element]:
    """Wait for a run started by :func:`_start`: its exit code, output and JUnit report."""
    output, _ = process.communicate(timeout=240)
    report = root / "report.xml"
    assert report.exists(), output
    return process.returncode, output, ET.parse(report).getroot()


def _run(root: Path, *args: str) -> tuple[int, str, ET.Element]:
    return _wait(root, _start(root, *args))


def _outcomes(tree: ET.Element) -> dict[str, dict[str, str]]:
    """``{driver directory: {test name with params: outcome}}`` from a JUnit report."""
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    for case in tree.iter("testcase"):
        directory = case.get("classname", "").split(".")[0]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        outcomes[directory][case.get("name", "")] = outcome
    return outcomes


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    broken, control = tmp_path_factory.mktemp("broken"), tmp_path_factory.mktemp("control")
    for cls, entries in CATCHES.items():
        _write_driver_dir(broken, cls, "conformance_broken_drivers", entries)
    every = sorted({entry for entries in CATCHES.values() for entry in entries})
    _write_driver_dir(control, CONTROL, "jobs_core.drivers.memory", every)
    runs = [(broken, _start(broken)), (control, _start(control))]
    (broken_code, broken_output, broken_tree), (control_code, control_output, control_tree) = (
        _wait(root, process) for root, process in runs
    )
    assert broken_code == 1, broken_output
    assert control_code == 0, control_output
    return {**_outcomes(broken_tree), **_outcomes(control_tree)}


def test_every_broken_driver_is_listed() -> None:
    defined = {
        name
        for name, value in vars(conformance_broken_drivers).items()
        if isinstance(value, type) and value.__module__ == conformance_broken_drivers.__name__
    }
    assert defined == set(CATCHES)


def test_the_healthy_driver_passes_every_selected_test(broken_run: dict[str, dict[str, str]]) -> None:
    control = broken_run[CONTROL]
    assert control, "the control run collected no tests"
    assert {name: o for name, o in control.items() if o != "passed"} == {}
    every = {_split(entry)[1] for entries in CATCHES.values() for entry in entries}
    assert {name.split("[", 1)[0] for name in control} == every


@pytest.mark.parametrize("driver", list(CATCHES))
def test_the_suite_catches_the_broken_driver(broken_run: dict[str, dict[str, str]], driver: str) -> None:
    results = broken_run[driver]
    failed = {name for name, outcome in results.items() if outcome == "failed"}
    for entry in CATCHES[driver]:
        test = entry.partition("::")[2]
        caught = test in failed if "[" in test else any(name.split("[", 1)[0] == test for name in failed)
        assert caught, f"{driver}: {test} did not fail; outcomes: {results}"


LEASES_FILE = "test_leases_AckNotIdempotent.py"


def _xfail_project(root: Path, lines: list[str]) -> None:
    _write_driver_dir(root, "AckNotIdempotent", "conformance_broken_drivers", CATCHES["AckNotIdempotent"])
    _write_driver_dir(
        root, CONTROL, "jobs_core.drivers.memory", ["test_lifecycle::test_close_twice_is_harmless"]
    )
    body = "".join(f"    {line}\n" for line in lines)
    (root / "pytest.ini").write_text(f"[pytest]\nxfail_strict = false\njobs_xfail =\n{body}")


def test_jobs_xfail_turns_a_known_bug_into_a_strict_expected_failure(tmp_path: Path) -> None:
    _xfail_project(
        tmp_path,
        [f"AckNotIdempotent/{LEASES_FILE}::test_ack_is_idempotent: acme#1, second ack raises"],
    )
    code, output, tree = _run(tmp_path)
    assert code == 0, output
    outcomes = _outcomes(tree)
    assert outcomes["AckNotIdempotent"] == {"test_ack_is_idempotent": "xfailed"}
    assert outcomes[CONTROL] == {"test_close_twice_is_harmless": "passed"}
    assert "known driver bug: acme#1, second ack raises" in ET.tostring(tree, encoding="unicode")


def test_a_listed_bug_that_was_fixed_fails_the_run(tmp_path: Path) -> None:
    _xfail_project(tmp_path, ["test_close_twice_is_harmless: fixed long ago"])
    code, output, tree = _run(tmp_path, "-k", "close_twice")
    assert code == 1, output
    assert _outcomes(tree)[CONTROL] == {"test_close_twice_is_harmless": "failed"}
    assert "XPASS(strict)" in ET.tostring(tree, encoding="unicode")


def test_a_malformed_jobs_xfail_line_is_a_usage_error(tmp_path: Path) -> None:
    _xfail_project(tmp_path, ["test_close_twice_is_harmless (no reason given)"])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--jobs-driver=memory://", str(tmp_path)],
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4
    assert "jobs_xfail: expected 'TEST: REASON'" in result.stderr


def test_a_jobs_xfail_name_that_matches_nothing_is_reported(tmp_path: Path) -> None:
    _xfail_project(tmp_path, ["test_that_does_not_exist: renamed long ago"])
    code, output, _ = _run(tmp_path, "-k", "close_twice", "-W", "default")
    assert code == 0, output
    assert "jobs_xfail: no collected test matches 'test_that_does_not_exist'" in output
