"""Version and run names: derived from content and commit, so re-deploys find what exists."""

import hashlib
import urllib.parse

import pytest
import yaml

from runner import versions
from runner.harness import Parameter

YAML_A = "kind: PipelineRun\nmetadata: {name: p, labels: {x: '1', y: '2'}}\n"
YAML_A_REORDERED = "metadata:\n  labels:\n    y: '2'\n    x: '1'\n  name: p\nkind: PipelineRun\n"


def test_hash_ignores_key_order_and_formatting_but_not_content():
    assert versions.content_hash(YAML_A) == versions.content_hash(YAML_A_REORDERED)
    assert versions.content_hash(YAML_A) != versions.content_hash(YAML_A.replace("'2'", "'3'"))


def test_version_name_is_slug_and_hash_within_the_server_limit():
    digest = "ab" * 32
    assert versions.version_name("add-pipeline", digest) == "add-pipeline-abababababab"
    long = versions.version_name("x" * 150, digest)
    assert len(long) == 100 and long.endswith("-abababababab")


def test_description_carries_commit_and_repo_and_is_parsed_back():
    text = versions.version_description("f" * 64, "0123456789abcdef", "https://git/x.git", "add.py")
    assert text.startswith(
        "dsp-runner: commit 0123456789abcdef of https://git/x.git, file add.py; sha256 "
    )
    assert versions.is_runner_version(text)
    assert not versions.is_runner_version("uploaded by hand")
    assert versions.commit_of(text) == "0123456789abcdef"
    assert versions.commit_of("uploaded by hand") == ""
    assert versions.commit_of(None) == ""


def test_run_name_ties_version_and_commit_or_slot():
    short = versions.short_commit("0123456789abcdef0123")
    assert versions.run_name("add-pipeline-abc", short) == "add-pipeline-abc@0123456789ab"
    assert versions.run_name("v", "cron-job-29123456") == "v@cron-job-29123456"
    assert versions.run_name("v", "") == "v@unknown"


def test_slug_is_read_back_from_a_version_name():
    assert versions.slug_of(versions.version_name("add-pipeline", "c" * 64)) == "add-pipeline"
    assert versions.slug_of("Add Pipeline") == "Add Pipeline"


def test_description_is_read_back_with_its_module_mark():
    text = versions.version_description("a" * 64, "", "", "sub/add.py", "0123456789abcdef of 2")
    assert versions.read_description(text) == {
        "source": "sub/add.py",
        "digest": "a" * 64,
        "module": "0123456789abcdef of 2",
    }
    assert versions.read_description("made by hand") == {}


def test_module_fingerprints_follow_own_file_shared_files_and_nothing_else(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    helper = tmp_path / "_helpers.py"
    for path in (a, b, helper):
        path.write_text("x = 1\n")
    first = versions.module_fingerprints(tmp_path, [a, b])
    assert first[a] != first[b]
    b.write_text("x = 2\n")
    second = versions.module_fingerprints(tmp_path, [a, b])
    assert second[a] == first[a] and second[b] != first[b]
    helper.write_text("x = 3\n")
    third = versions.module_fingerprints(tmp_path, [a, b])
    assert third[a] != second[a] and third[b] != second[b]


@pytest.mark.parametrize("package", ["kfp", "kfp-tekton", "dsp-runner"])
def test_module_fingerprints_follow_the_v1_flavours_sdk_and_the_runner(
    tmp_path, monkeypatch, package
):
    module = tmp_path / "a.py"
    module.write_text("x = 1\n")
    before = versions.module_fingerprints(tmp_path, [module])
    real = versions.importlib.metadata.version
    monkeypatch.setattr(
        versions.importlib.metadata,
        "version",
        lambda name: "9.9.9" if name == package else real(name),
    )
    assert versions.module_fingerprints(tmp_path, [module]) != before


def test_the_settings_file_is_not_part_of_any_module_fingerprint(tmp_path):
    module, settings = tmp_path / "a.py", tmp_path / "dsp-runner.yaml"
    module.write_text("x = 1\n")
    settings.write_text("defaults: {}\n")
    first = versions.module_fingerprints(tmp_path, [module], settings)
    settings.write_text("defaults: {}\n# a comment\n")
    assert versions.module_fingerprints(tmp_path, [module], settings) == first
    assert versions.module_fingerprints(tmp_path, [module]) != first


@pytest.mark.parametrize("source", ["a.py", "deep/" * 80 + "a.py"])
def test_a_record_description_fits_the_server_and_names_its_mark(source):
    text = versions.record_description(source, "0123456789abcdef of 2")
    assert len(text) <= 255
    assert text.startswith("dsp-runner: ") and text.endswith(
        "a.py compiles as module 0123456789abcdef of 2"
    )
    assert versions.record_target(text) == "0123456789abcdef of 2"
    assert versions.record_target("compiles as module 0123456789abcdef of 2") == ""


def test_the_hash_is_sha256_of_compact_sorted_utf8_json():
    """Stored version names carry this hash: changing its recipe would re-upload everything."""
    canonical = '{"a":[1,{"x":"é"}],"b":"two"}'
    assert (
        versions.content_hash("b: two\na: [1, {x: é}]\n")
        == hashlib.sha256(canonical.encode()).hexdigest()
    )


def test_yaml_is_loaded_safely():
    with pytest.raises(yaml.YAMLError):
        versions.load_yaml("!!python/object/apply:os.system ['true']")


def test_every_document_of_a_yaml_stream_is_loaded_safely():
    assert versions.load_yaml_documents("a: 1\n---\nb: [2]\n") == [{"a": 1}, {"b": [2]}]
    with pytest.raises(yaml.YAMLError):
        versions.load_yaml_documents("a: 1\n---\n!!python/object/apply:os.system ['true']\n")


def test_a_record_description_keeps_a_source_that_just_fits_and_cuts_one_that_does_not():
    mark = "0123456789abcdef of 2"
    tail = f" compiles as module {mark}"
    room = 255 - len("dsp-runner:") - 1 - len(tail)
    fits = "d/" * ((room - 4) // 2) + "a.py"
    fits = fits.rjust(room, "x")
    assert versions.record_description(fits, mark) == f"dsp-runner: {fits}{tail}"
    longer = "y" + fits
    cut = versions.record_description(longer, mark)
    assert len(cut) == 255
    assert cut == f"dsp-runner: ...{longer[-(room - 3) :]}{tail}"


def test_a_record_target_needs_both_the_mark_and_the_phrase():
    assert versions.record_target(None) == ""
    assert versions.record_target("dsp-runner: a.py compiles as module 0123 of 1") == "0123 of 1"
    assert versions.record_target("dsp-runner: a.py, nothing more") == ""


def test_a_v2_description_carries_the_parameter_signature_and_reads_it_back():
    parameters = (
        Parameter("x", None, type="NUMBER_INTEGER"),
        Parameter("label", "a; parameters b", type="STRING", optional=True),
    )
    text = versions.version_description("a" * 64, "", "", "add.py", "0123 of 1", parameters)
    assert versions.read_signature(text) == parameters
    assert versions.read_description(text)["module"] == "0123 of 1"
    assert versions.read_signature(versions.version_description("a" * 64, "", "", "a.py")) is None
    assert versions.read_signature("made by hand; parameters []") is None
    assert versions.read_signature(text.replace('"x"', "7")) is None
    assert versions.read_signature(text[:-3]) is None


def test_a_signature_past_the_cap_is_left_out_so_the_lookup_is_used():
    many = tuple(Parameter(f"p{i}", "é" * 40, type="STRING") for i in range(40))
    text = versions.version_description("a" * 64, "", "", "add.py", "", many)
    assert versions.SIGNATURE not in text
    assert versions.read_signature(text) is None
    assert versions.read_description(text)["source"] == "add.py"


def test_a_description_without_commit_repo_module_or_parameters_says_so_plainly():
    assert versions.version_description("a" * 64, "", "", "add.py") == (
        f"dsp-runner: commit unknown, file add.py; sha256 {'a' * 64}"
    )


def test_the_v2_signature_is_compact_json_with_text_as_written():
    """The dashboard shows the description: no padding, and a default's letters as typed."""
    parameters = (Parameter("x", None, type="NUMBER_INTEGER"), Parameter("é", "ü", "STRING", True))
    text = versions.version_description("a" * 64, "", "", "add.py", "0123 of 1", parameters)
    assert text.endswith(
        '; module 0123 of 1; parameters [["x","NUMBER_INTEGER",null,false],["é","STRING","ü",true]]'
    )


def test_a_signature_that_just_fits_the_cap_is_kept_and_one_character_more_is_not():
    def described(name_length: int) -> str:
        parameters = (Parameter("p" * name_length, None, type="STRING"),)
        return versions.version_description("a" * 64, "", "", "add.py", "", parameters)

    room = versions.MAX_SIGNED - len(urllib.parse.quote(described(1))) + 1
    assert len(urllib.parse.quote(described(room))) == versions.MAX_SIGNED
    assert versions.read_signature(described(room)) is not None
    assert versions.read_signature(described(room + 1)) is None


def test_hidden_files_and_caches_in_the_folder_change_no_fingerprint(tmp_path):
    """An editor's swap file, a .git folder or __pycache__ must not recompile every module;
    a helper in a subfolder must."""
    module = tmp_path / "add.py"
    module.write_text("x = 1\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helpers.py").write_text("y = 1\n")
    before = versions.module_fingerprints(tmp_path, [module])
    for noise in (".add.py.swp", ".git/HEAD", "lib/__pycache__/helpers.pyc", "lib/.cache/x"):
        (tmp_path / noise).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / noise).write_text("noise")
    assert versions.module_fingerprints(tmp_path, [module]) == before
    assert len(before[module]) == 16 and int(before[module], 16) >= 0
    (tmp_path / "lib" / "helpers.py").write_text("y = 2\n")
    assert versions.module_fingerprints(tmp_path, [module]) != before


def test_the_same_files_fingerprint_alike_in_any_workspace(tmp_path):
    """A CI workspace and a laptop checkout sit at different paths: the compile reuse must
    still recognise the files."""
    fingerprints = []
    for workspace in ("ci", "laptop/checkout"):
        folder = tmp_path / workspace / "pipelines"
        folder.mkdir(parents=True)
        (folder / "add.py").write_text("x = 1\n")
        (folder / "helpers.py").write_text("y = 1\n")
        fingerprints.append(versions.module_fingerprints(folder, [folder / "add.py"]))
    assert list(fingerprints[0].values()) == list(fingerprints[1].values())
