"""trainer.challenge_io and ``ecg-train score`` on real Challenge headers."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge._cli import run_app
from edge.errors import ScoringError
from trainer.challenge_io import (
    ScoringWarning,
    load_scoring_set,
    output_vectors,
    parse_dx_codes,
    read_label_dir,
    read_output,
    write_output,
)
from trainer.cli import app
from trainer.labels import NORMAL_CODE, class_codes, label_vector
from trainer.metrics import FIGURES, score_all

CODES = class_codes()
AF, RBBB, CRBBB = "164889003", "59118001", "713427006"


@pytest.fixture()
def label_dir(tmp_path, samples_dir) -> Path:
    """The 14 real sample headers, copied flat into a temporary folder."""
    out = tmp_path / "labels"
    out.mkdir()
    for hea in sorted(samples_dir.rglob("*.hea")):
        shutil.copy(hea, out / hea.name)
    return out


def _write_outputs(label_dir: Path, out_dir: Path, skip: int = 0) -> None:
    """Perfect decisions, scores 0.9/0.1, for all but the last ``skip`` records."""
    out_dir.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScoringWarning)
        labels = read_label_dir(label_dir)
    names = sorted(labels)
    for name in names[: len(names) - skip]:
        v = label_vector(labels[name])
        write_output(out_dir, name, CODES, v, np.where(v, 0.9, 0.1))


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


class TestParseDx:
    def test_forms(self):
        assert parse_dx_codes(["#Dx: 1,2"]) == ("1", "2")
        assert parse_dx_codes(["# Dx: 1, 2 ,3"]) == ("1", "2", "3")
        assert parse_dx_codes(["#Dx:1,1,2"]) == ("1", "2")
        assert parse_dx_codes(["#dx :  4 "]) == ("4",)

    def test_missing_dx_names_source(self):
        with pytest.raises(ScoringError, match=r"X\.hea: no '#Dx:' line"):
            parse_dx_codes(["X 12 500 5000", "#Age: 3"], source="X.hea")

    def test_empty_dx(self):
        with pytest.raises(ScoringError, match="no code"):
            parse_dx_codes(["#Dx: , "])


class TestReadLabelDir:
    def test_real_headers(self, label_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScoringWarning)
            labels = read_label_dir(label_dir)
        assert len(labels) == 14
        # georgia/E00005.hea: "#Dx: 59118001,164889003" (RBBB, merged with CRBBB when scored)
        assert labels["E00005"] == {RBBB, AF}
        assert label_vector(labels["E00005"])[CODES.index(CRBBB)]

    def test_recursive(self, samples_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScoringWarning)
            assert len(read_label_dir(samples_dir)) == 14

    def test_unknown_code_warns_and_is_kept(self, tmp_path):
        (tmp_path / "r1.hea").write_text("r1 12 500 5000\n#Dx: 999999,164889003\n")
        with pytest.warns(ScoringWarning, match="999999"):
            labels = read_label_dir(tmp_path)
        assert labels["r1"] == {"999999", AF}

    def test_header_without_dx(self, tmp_path):
        (tmp_path / "r1.hea").write_text("r1 12 500 5000\n#Age: 50\n")
        with pytest.raises(ScoringError, match=r"r1\.hea"):
            read_label_dir(tmp_path)

    def test_missing_and_empty_folder(self, tmp_path):
        with pytest.raises(ScoringError, match="not found"):
            read_label_dir(tmp_path / "nope")
        with pytest.raises(ScoringError, match="No header files"):
            read_label_dir(tmp_path)


class TestOutputFiles:
    def test_roundtrip(self, tmp_path):
        dec = np.array([True, False, True])
        sc = np.array([0.1234567890123, 1e-9, 0.5])
        path = write_output(tmp_path, "A0001", [AF, RBBB, NORMAL_CODE], dec, sc)
        assert path == tmp_path / "A0001.csv"
        assert path.read_text().splitlines()[0] == "#A0001"
        record, classes, d, s = read_output(path)
        assert (record, classes) == ("A0001", (AF, RBBB, NORMAL_CODE))
        np.testing.assert_array_equal(d, dec)
        np.testing.assert_array_equal(s, sc)

    @settings(max_examples=30, deadline=None)
    @given(
        st.lists(
            st.tuples(st.booleans(), st.floats(allow_nan=False, allow_infinity=False)),
            min_size=1,
            max_size=24,
        )
    )
    def test_roundtrip_property(self, tmp_path_factory, rows):
        folder = tmp_path_factory.mktemp("out")
        dec = np.array([r[0] for r in rows])
        sc = np.array([r[1] for r in rows])
        path = write_output(folder / "x.csv", "x", CODES[: len(rows)], dec, sc)
        _, _, d, s = read_output(path)
        np.testing.assert_array_equal(d, dec)
        np.testing.assert_array_equal(s, sc)

    def test_tolerant_reading(self, tmp_path):
        path = tmp_path / "r.csv"
        path.write_text("\n#r\n\n 164889003 , 59118001,999\n True, 0 ,t\n 0.5 ,0.25, nan \n\n")
        record, classes, dec, sc = read_output(path)
        assert record == "r"
        assert classes == (AF, RBBB, "999")
        np.testing.assert_array_equal(dec, [True, False, True])
        # Merged to the 24 classes: RBBB -> CRBBB, unknown 999 dropped, others 0.
        d, s = output_vectors(classes, dec, sc)
        assert d.sum() == 1 and d[CODES.index(AF)]
        assert s[CODES.index(CRBBB)] == 0.25 and s[CODES.index(AF)] == 0.5
        assert s.sum() == 0.75

    def test_equivalent_codes_merge_like_the_official_loader(self):
        # Both RBBB codes written: decision any, score mean; a NaN score reads as 0.
        d, s = output_vectors([RBBB, CRBBB, AF], [False, True, True], [0.2, 0.4, np.nan])
        j = CODES.index(CRBBB)
        assert d[j] and s[j] == pytest.approx(0.3)
        assert s[CODES.index(AF)] == 0.0

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("#r\n1,2\n0,1\n", r"r\.csv: missing the line of the scores"),
            ("#r\n", "missing the line of the class codes"),
            ("#r\n1,2\n0,1,1\n0.1,0.2\n", r"line 3: 3 decisions for 2 classes"),
            ("#r\n1,2\n0,1\n0.1\n", r"line 4: 1 scores for 2 classes"),
            ("#r\n1,2\n0,yes\n0.1,0.2\n", r"line 3, column 2: expected 0 or 1, got 'yes'"),
            ("#r\n1,2\n0,1\n0.1,abc\n", r"line 4, column 2: expected a number, got 'abc'"),
            ("#r\n1,,2\n0,1,0\n0.1,0.2,0.3\n", "empty class code"),
            ("#r\n1\n0\n0.1\n5\n", "line 5: unexpected"),
        ],
    )
    def test_broken_files(self, tmp_path, text, match):
        path = tmp_path / "r.csv"
        path.write_text(text)
        with pytest.raises(ScoringError, match=match):
            read_output(path)

    def test_write_refuses_mismatched_lengths(self, tmp_path):
        with pytest.raises(ScoringError, match="2 classes"):
            write_output(tmp_path, "r", [AF, RBBB], [1], [0.5, 0.5])


class TestLoadScoringSet:
    def test_pairs_and_counts_missing(self, label_dir, tmp_path):
        _write_outputs(label_dir, tmp_path / "out", skip=3)
        write_output(tmp_path / "out", "ZZ999", [AF], [1], [1.0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScoringWarning)
            data = load_scoring_set(label_dir, tmp_path / "out")
        assert len(data.records) == 14 and data.labels.shape == (14, 24)
        assert len(data.missing) == 3 and data.unmatched == ("ZZ999",)
        for rec in data.missing:
            assert not data.outputs[data.records.index(rec)].any()


class TestScoreCommand:
    def test_perfect_outputs(self, label_dir, tmp_path):
        _write_outputs(label_dir, tmp_path / "out")
        result = _run(
            "score", str(label_dir), str(tmp_path / "out"), "--json", str(tmp_path / "s.json")
        )
        assert result.exit_code == 0, result.output
        doc = json.loads((tmp_path / "s.json").read_text())
        assert tuple(doc) == FIGURES
        assert doc["challenge_metric"] == pytest.approx(1.0)
        assert doc["accuracy"] == pytest.approx(1.0)
        assert doc["auroc"] == pytest.approx(1.0)
        assert "Challenge metric" in result.stdout and "1.000" in result.stdout

    def test_matches_score_all_with_missing_outputs(self, label_dir, tmp_path):
        # Missing outputs count as all 0: the figures equal score_all on zero rows.
        _write_outputs(label_dir, tmp_path / "out", skip=4)
        result = _run(
            "score", str(label_dir), str(tmp_path / "out"), "--json", str(tmp_path / "s.json")
        )
        assert result.exit_code == 0, result.output
        assert "4 of 14 records have no output file" in result.stderr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScoringWarning)
            labels = read_label_dir(label_dir)
        names = sorted(labels)
        lab = np.array([label_vector(labels[n]) for n in names])
        out = lab.copy()
        out[-4:] = False
        sc = np.where(out, 0.9, 0.1)
        sc[-4:] = 0.0
        expected = score_all(lab, out, sc, CODES).to_json()
        doc = json.loads((tmp_path / "s.json").read_text())
        assert doc == pytest.approx(expected, nan_ok=True)

    def test_unknown_record_output_warns(self, label_dir, tmp_path):
        _write_outputs(label_dir, tmp_path / "out")
        write_output(tmp_path / "out", "ZZ999", [AF], [1], [1.0])
        result = _run("score", str(label_dir), str(tmp_path / "out"))
        assert result.exit_code == 0
        assert "1 output files have no labelled record, ignored: ZZ999" in result.stderr

    @pytest.mark.parametrize(
        "case", ["no_labels", "empty_outputs", "no_dx", "bad_columns", "no_match"]
    )
    def test_bad_input_is_one_line_error(self, label_dir, tmp_path, case, capsys):
        out = tmp_path / "out"
        _write_outputs(label_dir, out)
        labels = label_dir
        expected = ""
        if case == "no_labels":
            labels, expected = tmp_path / "nope", "Label folder not found"
        elif case == "empty_outputs":
            out = tmp_path / "empty"
            out.mkdir()
            expected = "No output files"
        elif case == "no_dx":
            (label_dir / "A0001.hea").write_text("A0001 12 500 7500\n#Age: 74\n")
            expected = "A0001.hea: no '#Dx:' line"
        elif case == "bad_columns":
            (out / "A0003.csv").write_text(f"#A0003\n{AF},{RBBB}\n1\n0.5,0.5\n")
            expected = "A0003.csv, line 3: 1 decisions for 2 classes"
        elif case == "no_match":
            other = tmp_path / "other"
            other.mkdir()
            write_output(other, "ZZ1", [AF], [1], [1.0])
            out, expected = other, "matches"
        code = run_app(app, ["score", str(labels), str(out)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("error: ") and expected in err, err
        assert "Traceback" not in err

    def test_console_script_no_traceback(self, tmp_path):
        import subprocess
        import sys

        exe = Path(sys.executable).parent / "ecg-train"
        if not exe.exists():
            pytest.skip("ecg-train console script not installed")
        proc = subprocess.run(
            [str(exe), "score", str(tmp_path / "x"), str(tmp_path / "y")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: Label folder not found")
        assert "Traceback" not in proc.stderr
