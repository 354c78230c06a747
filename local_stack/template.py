"""Read template.yaml so that tests and the local stack build exactly what SAM deploys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !GetAtt, !Sub, ...) as dicts."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def table_definition(template: dict[str, Any], table_name: str, logical_id: str = "Table") -> dict[str, Any]:
    """create_table kwargs from the AWS::DynamoDB::Table resource (key schema, indexes, stream)."""
    props = template["Resources"][logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for key in ("LocalSecondaryIndexes", "GlobalSecondaryIndexes"):
        if props.get(key):
            kwargs[key] = props[key]
    stream = props.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return kwargs


def ttl_attribute(template: dict[str, Any], logical_id: str = "Table") -> str | None:
    spec = template["Resources"][logical_id]["Properties"].get("TimeToLiveSpecification") or {}
    return spec.get("AttributeName") if spec.get("Enabled") else None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    environment: dict[str, str]


def function_spec(template: dict[str, Any], logical_id: str, refs: dict[str, str]) -> FunctionSpec:
    """Handler location and environment of a function, with !Ref values resolved from `refs`."""
    # A parameter the caller does not give resolves to its default, as on `sam deploy`.
    refs = {
        **{name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items() if "Default" in spec},
        **refs,
    }
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    props = template["Resources"][logical_id]["Properties"]
    own_env = props.get("Environment", {}).get("Variables", {})
    environment = {name: _resolve(value, refs) for name, value in {**globals_env, **own_env}.items()}
    module, handler = props["Handler"].rsplit(".", 1)
    return FunctionSpec(logical_id, ROOT / props["CodeUri"], module, handler, environment)


def parameter_default(template: Mapping[str, Any], name: str) -> str:
    return str(template["Parameters"][name]["Default"])


def _resolve(value: Any, refs: dict[str, str]) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return refs[value["Ref"]]
    return str(value)
