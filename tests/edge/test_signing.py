"""Signed bundles: Ed25519 over manifest.json; the agent runs only what a trusted key signed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pytest
from agent_fixtures import agent_bundle, run_cli  # noqa: F401

from edge.bundle import HEAD, MANIFEST, Head, load_bundle, sha256_file
from edge.errors import BundleError, ConfigError
from edge.signing import (
    SIGNATURE,
    demo_public_keys,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_bundle,
    trusted_keys,
    verify_folder,
)


@pytest.fixture
def keypair(tmp_path):
    return generate_keypair(tmp_path / "keys" / "acme")


@pytest.fixture
def bundle_copy(tmp_path, agent_bundle):
    dest = tmp_path / "bundle"
    shutil.copytree(agent_bundle, dest)
    return dest


def _tamper_consistently(folder):
    """Change head.npz and its sha256 in the manifest together: the sums still match."""
    head = Head.load(folder / HEAD)
    bad = Head(**{**head.__dict__, "b": head.b + np.float32(5.0)})
    bad.save(folder / HEAD)
    m = json.loads((folder / MANIFEST).read_text())
    m["files"][HEAD] = sha256_file(folder / HEAD)
    (folder / MANIFEST).write_text(json.dumps(m, indent=2) + "\n")


class TestSignatures:
    def test_shipped_bundle_verifies_with_the_demo_key(self):
        b = load_bundle(None, trust=trusted_keys())
        assert b.signature.ok and b.signature.key.demo
        assert [k.key_id for k in demo_public_keys()] == ["a7f23de3f344fdf2"]

    def test_own_key_signs_and_only_it_verifies(self, bundle_copy, keypair):
        priv, pub = keypair
        assert oct(priv.stat().st_mode & 0o777) == "0o600"
        sign_bundle(bundle_copy, load_private_key(priv))
        mine = (load_public_key(pub),)
        assert verify_folder(bundle_copy, mine).ok
        with pytest.raises(BundleError, match="does not verify with any trusted key"):
            load_bundle(bundle_copy, trust=trusted_keys())  # demo key only

    def test_consistent_change_is_refused_for_its_signature(self, bundle_copy, keypair):
        priv, pub = keypair
        sign_bundle(bundle_copy, load_private_key(priv))
        _tamper_consistently(bundle_copy)
        load_bundle(bundle_copy)  # the manifest's own sums cannot tell
        with pytest.raises(BundleError, match="does not verify with any trusted key") as err:
            load_bundle(bundle_copy, trust=(load_public_key(pub),))
        assert "altered" in str(err.value)

    def test_unsigned_is_refused_unless_allowed(self, bundle_copy):
        (bundle_copy / SIGNATURE).unlink()
        with pytest.raises(BundleError, match="bundle is not signed"):
            load_bundle(bundle_copy, trust=trusted_keys())
        b = load_bundle(bundle_copy, trust=trusted_keys(), allow_unsigned=True)
        assert not b.signature.ok

    def test_expired_key_is_refused(self, bundle_copy, tmp_path):
        yesterday = date.today() - timedelta(days=2)
        priv, pub = generate_keypair(tmp_path / "old", not_after=yesterday)
        sign_bundle(bundle_copy, load_private_key(priv))
        with pytest.raises(BundleError, match=f"expired on {yesterday.isoformat()}"):
            load_bundle(bundle_copy, trust=(load_public_key(pub),))

    def test_key_files_are_checked(self, keypair, tmp_path):
        priv, _ = keypair
        os.chmod(priv, 0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            load_private_key(priv)
        with pytest.raises(ConfigError, match="holds a PRIVATE key"):
            load_public_key(priv)
        with pytest.raises(ConfigError, match="does not exist"):
            load_public_key(tmp_path / "nope.pub")
        with pytest.raises(ConfigError, match="already exists"):
            generate_keypair(priv.with_suffix(""))


class TestCommands:
    def test_keygen_sign_run(self, bundle_copy, tmp_path, samples_dir):
        p = run_cli("keygen", str(tmp_path / "k" / "dev"))
        assert p.returncode == 0, p.stderr
        sign = subprocess.run(
            [sys.executable, "-m", "trainer.cli", "sign",
             str(bundle_copy), "--key", str(tmp_path / "k" / "dev.key")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sign.returncode == 0, sign.stderr
        rec = str(samples_dir / "georgia" / "E00005")
        refused = run_cli("replay", rec, "--speed", "max", "--json", "--bundle", str(bundle_copy))
        assert refused.returncode == 2 and refused.stdout == ""
        (line,) = refused.stderr.strip().splitlines()  # one clear line
        assert line.startswith("error: bundle signature does not verify with any trusted key")
        ok = run_cli(
            "replay", rec, "--speed", "max", "--json", "--bundle", str(bundle_copy),
            "--trusted-key", str(tmp_path / "k" / "dev.pub"),
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "DEMONSTRATION" not in ok.stderr

    def test_allow_unsigned_is_loud(self, bundle_copy, samples_dir):
        (bundle_copy / SIGNATURE).unlink()
        rec = str(samples_dir / "georgia" / "E00005")
        p = run_cli(
            "replay", rec, "--speed", "max", "--json", "--bundle", str(bundle_copy),
            "--allow-unsigned",
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert "WARNING: --allow-unsigned: bundle is not signed" in p.stderr
        info = run_cli("info", str(bundle_copy))
        assert "NOT VERIFIED: bundle is not signed" in info.stdout


# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)


class TestDeployCommands:
    def test_install_refuses_an_untrusted_bundle(self, tmp_path, bundle_copy, keypair):
        priv, _ = keypair
        sign_bundle(bundle_copy, load_private_key(priv))
        p = run_cli("install", str(bundle_copy), str(tmp_path / "current"))
        assert p.returncode == 2 and not (tmp_path / "current").exists()
        assert "does not verify with any trusted key" in p.stderr

    def test_run_without_a_device_and_reload_without_an_agent(self, tmp_path):
        p = run_cli("run", "--json")
        assert p.returncode == 2 and p.stdout == ""
        assert (
            p.stderr.strip()
            == "error: no serial device: give --device, or device = ... in [source]"
        )
        r = run_cli("reload", "--device-id", "bed-404", env={"ECG_EDGE_STATE_DIR": str(tmp_path)})
        assert r.returncode == 2 and "no running agent for device 'bed-404'" in r.stderr
