"""Swapping a bundle mid-stream: no frame lost, new sha256 after, bad bundles rejected."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from agent_fixtures import CLI, ROOT, agent_bundle, build_tiny_bundle  # noqa: F401

from edge.bundle import MANIFEST, load_bundle
from edge.errors import BundleError
from edge.reload import Reloader, install_bundle
from edge.signing import load_private_key, sign_bundle

RECORD = "cpsc2018/A0005"  # 25 s


@pytest.fixture(scope="module")
def second_bundle(tmp_path_factory):
    """Same classes and preprocessing as ``agent_bundle``, other weights; demo-signed."""
    return build_tiny_bundle(tmp_path_factory.mktemp("b2") / "tiny2", seed=1)


@pytest.fixture(scope="module")
def wrong_self_test(tmp_path_factory, second_bundle):
    """Validly signed, but its self-test reference does not match its extractor."""
    dest = tmp_path_factory.mktemp("bad") / "b"
    shutil.copytree(second_bundle, dest)
    m = json.loads((dest / MANIFEST).read_text())
    m["self_test"]["scores"]["int8"][0] += 0.5
    (dest / MANIFEST).write_text(json.dumps(m, indent=2) + "\n")
    key = load_private_key(ROOT / "keys" / "demo-signing-key.pem", check_permissions=False)
    sign_bundle(dest, key, self_test=False)
    return dest


@pytest.fixture(scope="module")
def tampered(tmp_path_factory, second_bundle):
    dest = tmp_path_factory.mktemp("tampered") / "b"
    shutil.copytree(second_bundle, dest)
    m = json.loads((dest / MANIFEST).read_text())
    m["validation"]["note"] = "changed after signing"
    (dest / MANIFEST).write_text(json.dumps(m, indent=2) + "\n")
    return dest


def _replay(bundle, samples_dir):
    from edge.agent import Agent
    from edge.replay import ReplaySource

    events: list[dict] = []
    Agent(load_bundle(bundle), sink=events.append, hop_s=1.0).run(
        ReplaySource([samples_dir / RECORD], speed=None)
    )
    return events


class TestSwap:
    def test_swap_mid_stream(
        self, samples_dir, agent_bundle, second_bundle, wrong_self_test, tampered
    ):
        plain = _replay(agent_bundle, samples_dir)
        plain_frames = [(e["start_sample"], e["end_sample"]) for e in plain if e["type"] == "frame"]
        assert len(plain_frames) >= 20

        from edge.agent import Agent
        from edge.replay import ReplaySource

        events: list[dict] = []
        reloader_box: dict = {}
        plan = {4: second_bundle, 9: wrong_self_test, 13: tampered}

        def sink(e):
            events.append(e)
            if e["type"] == "frame":
                n = sum(x["type"] == "frame" for x in events)
                if n in plan:
                    r = reloader_box["r"]
                    r.path = plan[n]
                    r.reload_now()

        agent = Agent(load_bundle(agent_bundle), sink=sink, hop_s=1.0)
        reloader_box["r"] = Reloader(agent, agent_bundle)
        agent.run(ReplaySource([samples_dir / RECORD], speed=None))

        frames = [e for e in events if e["type"] == "frame"]
        assert [(e["start_sample"], e["end_sample"]) for e in frames] == plain_frames  # none lost
        old, new = load_bundle(agent_bundle).sha256, load_bundle(second_bundle).sha256
        assert {e["bundle_sha256"] for e in frames[:4]} == {old}
        assert {e["bundle_sha256"] for e in frames[4:]} == {new}  # from the next frame on
        assert frames[4]["scores"] != plain[[e["type"] for e in plain].index("frame")]["scores"]
        rejected = [e for e in events if e["type"] == "alert" and e["kind"] == "technical"]
        assert [e["condition"] for e in rejected] == ["bundle_rejected"] * 2
        assert "self-test failed" in rejected[0]["reason"]
        assert "does not verify with any trusted key" in rejected[1]["reason"]
        assert reloader_box["r"].results[0] is None

    def test_refusals_name_the_reason(self, tmp_path, agent_bundle, second_bundle):
        from dataclasses import replace

        from edge.agent import Agent
        from edge.reload import compatible, prepare

        b = load_bundle(agent_bundle)
        other = replace(b, manifest=replace(b.manifest, classes=b.manifest.classes[::-1]))
        assert "classes differ" in compatible(b, other)
        dsp = replace(b.manifest.dsp, band_order=b.manifest.dsp.band_order + 1)
        assert "preprocessing differs" in compatible(
            b, replace(b, manifest=replace(b.manifest, dsp=dsp))
        )
        agent = Agent(b)
        unsigned = tmp_path / "unsigned"
        shutil.copytree(second_bundle, unsigned)
        os.remove(unsigned / "manifest.sig")
        with pytest.raises(BundleError, match="bundle is not signed"):
            prepare(agent, unsigned)
        mm = json.loads((unsigned / MANIFEST).read_text())
        del mm["self_test"]
        (unsigned / MANIFEST).write_text(json.dumps(mm, indent=2) + "\n")
        with pytest.raises(BundleError, match="no self-test reference"):
            prepare(agent, unsigned, allow_unsigned=True)


class TestInstall:
    def test_atomic_install(self, tmp_path, agent_bundle, second_bundle):
        current = tmp_path / "bundles" / "current"
        current.parent.mkdir()
        install_bundle(agent_bundle, current)
        assert load_bundle(current).sha256 == load_bundle(agent_bundle).sha256
        # a power cut mid-copy leaves a .part folder: current still names the old bundle
        part = current.with_name(".bundle-" + load_bundle(second_bundle).sha256[:12] + ".part")
        shutil.copytree(second_bundle, part)
        (part / "head.npz").write_bytes(b"half")
        assert load_bundle(current).sha256 == load_bundle(agent_bundle).sha256
        install_bundle(second_bundle, current)  # the next install redoes the copy
        assert load_bundle(current).sha256 == load_bundle(second_bundle).sha256
        plain = tmp_path / "plain"
        shutil.copytree(agent_bundle, plain)
        with pytest.raises(BundleError, match="not a symlink"):
            install_bundle(second_bundle, plain)


class TestSighup:
    @pytest.mark.slow
    def test_sighup_swaps_a_running_replay(
        self, tmp_path, samples_dir, agent_bundle, second_bundle
    ):
        current = tmp_path / "current"
        install_bundle(agent_bundle, current)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ECG_EDGE_STATE_DIR": str(tmp_path)}
        proc = subprocess.Popen(
            [*CLI, "replay", str(samples_dir / RECORD), "--speed", "2", "--json", "--hop-s", "1",
             "--bundle", str(current), "--device-id", "bed-9"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        lines = []
        try:
            while True:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                lines.append(json.loads(line))
                if lines[-1]["type"] == "frame":
                    break
            install_bundle(second_bundle, current)
            time.sleep(0.2)
            r = subprocess.run(
                [*CLI, "reload", "--device-id", "bed-9"], cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        assert proc.returncode == 0, err
        lines += [json.loads(x) for x in out.splitlines()]
        frames = [e for e in lines if e["type"] == "frame"]
        shas = [e["bundle_sha256"] for e in frames]
        new = load_bundle(second_bundle).sha256
        assert shas[0] == load_bundle(agent_bundle).sha256 and shas[-1] == new
        assert "reload: bundle" in err
        assert len(frames) == 25  # 25 s, a frame every second: none lost


# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
