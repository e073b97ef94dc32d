"""The tenant schema: every example is valid, and every bad input is named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from assotic.tenants import (
    APP_NAMES,
    json_schema,
    load_tenants,
    parse_tenant_file,
    quota_bytes,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "group_data" / "tenants"


def good_tenant(slug: str = "amap") -> dict:
    return {
        "slug": slug,
        "name": "AMAP des Pentes",
        "contact": {"email": "bureau@amap.example.org"},
        "apps": {"nextcloud": {"host": "web-1", "domain": f"cloud.{slug}.example.org"}},
        "admins": [{"name": "Ana", "email": "ana@amap.example.org"}],
    }


def write(directory: Path, name: str, content: str | bytes | dict) -> Path:
    path = directory / name
    if isinstance(content, dict):
        content = yaml.safe_dump(content, allow_unicode=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def problems_for(tmp_path: Path, content, name: str = "amap.yml"):
    path = write(tmp_path, name, content)
    tenant, problems = parse_tenant_file(path, label=name)
    assert tenant is None, "a bad file must not produce a tenant"
    return [(p.file, p.field, p.expected) for p in problems]


def test_examples_are_valid_and_cover_three_kinds_of_association():
    loaded, problems = load_tenants(EXAMPLES)
    assert problems == []
    assert sorted(t.slug for _, t in loaded) == ["toitcommun", "ulap", "zerodechet"]


def test_good_tenant_has_defaults_a_volunteer_can_rely_on(tmp_path):
    tenant, problems = parse_tenant_file(write(tmp_path, "amap.yml", good_tenant()))
    assert problems == []
    assert tenant.backup.retention.daily == 7
    assert tenant.quotas.per_user == "2 GB"
    assert tenant.admins[0].username == "ana"
    assert list(tenant.apps.enabled()) == ["nextcloud"]


def mutate(**changes) -> dict:
    data = good_tenant()
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return data


DELETE = object()

# (case, content, field, a fragment of what was expected)
BAD_TENANTS = [
    ("unknown top-level key", mutate(quota={"per_user": "1 GB"}), "quota",
     "unknown key; did you mean 'quotas'?"),
    ("unknown nested key", mutate(contact__mail="x@y.org"), "contact.mail", "unknown key"),
    ("unknown app", mutate(apps__wordpress={"host": "web-1"}), "apps.wordpress", "unknown app"),
    ("uppercase slug", mutate(slug="Amap"), "slug", "lowercase"),
    ("slug with shell metacharacters", mutate(slug="amap;rm"), "slug", "lowercase"),
    ("slug too long", mutate(slug="a" * 21), "slug", "2 to 20 characters"),
    ("slug with leading digit", mutate(slug="1amap"), "slug", "starting with a letter"),
    ("slug with leading dash", mutate(slug="-amap"), "slug", "starting with a letter"),
    ("slug not matching file name", mutate(slug="amapx"), "slug", "must equal the file name"),
    ("invalid FQDN", mutate(apps__nextcloud__domain="cloud_amap"), "apps.nextcloud.domain",
     "fully qualified domain name"),
    ("FQDN with uppercase", mutate(apps__nextcloud__domain="Cloud.Amap.org"),
     "apps.nextcloud.domain", "lowercase"),
    ("bad quota string", mutate(quotas={"per_user": "2 gigas"}), "quotas.per_user", "5 GB"),
    ("missing contact", mutate(contact=DELETE), "contact", "required"),
    ("invalid contact e-mail", mutate(contact={"email": "bureau-at-amap"}), "contact.email",
     "e-mail address"),
    ("no app at all", mutate(apps={}), "apps", "at least one app"),
    ("no admin", mutate(admins=[]), "admins", "at least one entry"),
    ("retention not a number", mutate(backup={"retention": {"daily": "often"}}),
     "backup.retention.daily", "whole number"),
    ("YAML syntax error", "slug: amap\nname: [unclosed\n", "", "YAML syntax error at line"),
    ("duplicate key", "slug: amap\nslug: amap2\n", "", "duplicate key 'slug'"),
    ("empty file", "", "", "the file is empty"),
    ("only a comment", "# nothing yet\n", "", "the file is empty"),
    ("top level is a list", "- slug: amap\n", "", "the top level is a list"),
    ("not UTF-8", "name: Z\xe9ro D\xe9chet\n".encode("latin-1"), "", "not UTF-8"),
]


@pytest.mark.parametrize("case,content,field,expected", BAD_TENANTS, ids=[c[0] for c in BAD_TENANTS])
def test_bad_tenant_file_is_rejected_with_file_field_and_expectation(tmp_path, case, content,
                                                                      field, expected):
    problems = problems_for(tmp_path, content)
    assert any(f == "amap.yml" and fld == field and expected in exp for f, fld, exp in problems), \
        f"{case}: got {problems}"


def test_all_problems_of_all_files_come_out_in_one_run(tmp_path):
    write(tmp_path, "amap.yml", mutate(slug="Amap", contact=DELETE))
    write(tmp_path, "broken.yml", "name: [")
    write(tmp_path, "list.yml", "- a\n")
    _, problems = load_tenants(tmp_path)
    files = {p.file.rsplit("/", 1)[-1] for p in problems}
    assert files == {"amap.yml", "broken.yml", "list.yml"}
    assert {p.field for p in problems if p.file.endswith("amap.yml")} >= {"slug", "contact"}


def test_duplicate_domains_across_tenants_are_rejected(tmp_path):
    write(tmp_path, "amap.yml", good_tenant("amap"))
    other = good_tenant("velo")
    other["apps"]["nextcloud"]["domain"] = "cloud.amap.example.org"
    write(tmp_path, "velo.yml", other)
    loaded, problems = load_tenants(tmp_path)
    assert len(loaded) == 2
    [problem] = problems
    assert problem.file.endswith("velo.yml") and problem.field == "apps.nextcloud.domain"
    assert "already used by" in problem.expected and "amap.yml" in problem.expected


def test_duplicate_slugs_across_files_are_rejected(tmp_path):
    write(tmp_path, "amap.yml", good_tenant("amap"))
    copy = good_tenant("amap")
    copy["apps"]["nextcloud"]["domain"] = "cloud2.amap.example.org"
    write(tmp_path, "amap.yaml", copy)
    _, problems = load_tenants(tmp_path)
    assert [(p.field, "already used by" in p.expected) for p in problems] == [("slug", True)]


def test_missing_directory_is_a_problem_not_a_crash(tmp_path):
    _, problems = load_tenants(tmp_path / "nope")
    assert problems and "not found" in problems[0].expected


@pytest.mark.parametrize("text,expected", [("500 MB", 500 * 10**6), ("1.5 GB", 15 * 10**8),
                                           ("2TB", 2 * 10**12), ("unlimited", None)])
def test_quota_bytes(text, expected):
    assert quota_bytes(text) == expected


def test_published_json_schema_matches_the_schema_module():
    published = json.loads((REPO / "schema" / "tenant.schema.json").read_text())
    assert published == json_schema(), "run `make schema` and commit schema/tenant.schema.json"
    assert set(published["$defs"]["Apps"]["properties"]) == set(APP_NAMES)
    assert published["additionalProperties"] is False


def test_a_total_quota_no_app_applies_is_refused_saying_what_to_do(tmp_path):
    """quotas.total reached no app (Nextcloud has no group quota in core): a volunteer writing it
    is told so, with the file, the field and what to write instead."""
    data = good_tenant()
    data["quotas"] = {"per_user": "5 GB", "total": "100 GB"}
    [(file, field, expected)] = problems_for(tmp_path, data)
    assert (file, field) == ("amap.yml", "quotas.total")
    assert "not applied by any app" in expected and "remove the line" in expected
    assert "quotas.per_user" in expected
