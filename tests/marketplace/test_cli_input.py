"""The CLI refuses what the admin API refuses, with a message and exit code 2, never a
traceback: limits past 64 bits, a NaN or absurd budget, a key id in another script's digits,
a month outside 1970-9998."""

from __future__ import annotations

import pytest

from tests.marketplace.helpers import cli


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'c.db'}"
    cli("customers", "create", "clico", "--database", url)
    return url


@pytest.mark.parametrize("args", [
    ["keys", "create", "--customer", "clico", "--rpm", "99999999999999999999"],
    ["keys", "create", "--customer", "clico", "--budget", "NaN"],
    ["keys", "create", "--customer", "clico", "--budget", "Infinity"],
    ["keys", "create", "--customer", "clico", "--budget", "1e30"],
    ["keys", "revoke", "\u0663"],  # Arabic-Indic 3: not key 3
    ["statement", "--customer", "clico", "--month", "0000-01"],
    ["margins", "--month", "9999-12"],
])
def test_bad_input_is_a_clear_error(db, args):
    proc = cli(*args, "--database", db, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip()
