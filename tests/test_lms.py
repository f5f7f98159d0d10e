"""LMS export: the wide, Canvas and Moodle layouts from a grading run's grades.csv."""
import csv

import pytest

from autograder import lms


@pytest.fixture
def run(tmp_path):
    rows = [["student", "notebook", "score", "max_score", "status", "detail"],
            ["ada", "01_autoencoders", "14", "14", "graded", ""],
            ["ada", "02_denoising", "7.5", "12", "graded", ""],
            ["bob", "01_autoencoders", "0", "14", "tampered", "'=HYPERLINK(1)"],
            ["bob", "02_denoising", "0", "12", "missing", ""]]
    with open(tmp_path / "grades.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return tmp_path


def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_wide_has_one_row_per_learner_and_one_column_per_notebook(run):
    rows = _read(lms.export(run, "wide"))
    assert rows[0] == ["student", "01_autoencoders", "02_denoising", "total"]
    assert rows[1] == ["ada", "14", "7.5", "21.5"]
    assert rows[2] == ["bob", "0", "0", "0"]
    assert rows[3] == ["max_score", "14", "12", "26"]


def test_canvas_layout_with_points_possible_and_roster(run, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name,sis_id,login,section\nada,Ada L,S1,ada1,A\ncyd,Cyd M,S3,cyd3,B\n")
    rows = _read(lms.export(run, "canvas", roster=roster))
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert rows[1] == ["Points Possible", "", "", "", "", "14", "12"]
    by_name = {r[0]: r for r in rows[2:]}
    assert by_name["Ada L"][2:] == ["S1", "ada1", "A", "14", "7.5"]
    assert by_name["Cyd M"][5:] == ["", ""]          # no submission: ungraded, not 0
    assert by_name["bob"][2] == "bob"                # not in the roster: the submission id


def test_moodle_by_email_when_the_roster_has_them(run, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,email\nada,ada@example.org\nbob,bob@example.org\n")
    rows = _read(lms.export(run, "moodle", roster=roster))
    assert rows[0] == ["Email address", "01_autoencoders", "02_denoising"]
    assert rows[1] == ["ada@example.org", "14", "7.5"]


def test_bad_input_is_named(tmp_path, run):
    with pytest.raises(FileNotFoundError, match="no grades.csv"):
        lms.export(tmp_path / "nowhere", "wide")
    with pytest.raises(ValueError, match="unknown format"):
        lms.export(run, "blackboard")
    bad = tmp_path / "r.csv"
    bad.write_text("name\nx\n")
    with pytest.raises(ValueError, match="'student' column"):
        lms.export(run, "wide", roster=bad)


def test_written_points_are_added_once_awarded_and_pending_ones_are_reported(run, capsys):
    rows = [["student", "notebook", "question", "points", "answer", "awarded"],
            ["ada", "02_denoising", "written_a", "2", "because ...", "1.5"],
            ["ada", "02_denoising", "written_b", "2", "", ""],
            ["bob", "01_autoencoders", "written_c", "2", "copied", "2"]]
    with open(run / "written.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = _read(lms.export(run, "wide"))
    assert out[1] == ["ada", "14", "9", "23"]          # 7.5 + 1.5; the pending answer counts 0
    assert out[2] == ["bob", "0", "0", "0"]            # a tampered notebook stays at 0
    assert out[3] == ["max_score", "16", "16", "32"]   # every written question's points are possible
    assert "1 written answer(s)" in capsys.readouterr().err
    rows[1][5] = "3"
    with open(run / "written.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(ValueError, match="outside 0..2"):
        lms.export(run, "wide")
