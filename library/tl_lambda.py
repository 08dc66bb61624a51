#!/usr/bin/python
# Copyright: tinyllama-ops. Apache-2.0.
"""tl_lambda: a Python Lambda function built from its sources, its versions and its alias."""

DOCUMENTATION = r"""
---
module: tl_lambda
short_description: Build, deploy and version a Python Lambda function from its source directory
description:
  - Builds the function's zip itself, deterministically, from its source directory (every file of
    it), the parts of the C(tlops) package the handler imports and the pure-Python third-party
    packages it needs; the same inputs give the same bytes, so an unchanged function reports no
    change.
  - It exists because M(amazon.aws.lambda) uploads a zip it is given (and cannot tell whether a
    rebuilt zip is new), publishes a version on every code change without any retention policy,
    and cannot roll an alias back.
  - Creates or updates the function (code and configuration compared with C($LATEST), each updated
    only when it differs, waiting for each update to finish), publishes a version only when the
    code or the configuration changed or when the alias does not point at a version holding the
    desired code and configuration (if the newest published version holds them, the alias is
    pointed at it, which is what PublishVersion would return), points the alias at it, and
    deletes published versions beyond the newest O(keep_versions) that no alias points to (on
    every run, so lowering O(keep_versions) applies at once).
  - O(rollback=true) is an action, not a state; it points the alias at the published version
    before the one it points to now and changes nothing else, and reports a change each time it
    moves the alias. A later run without O(rollback) points the alias at the version holding the
    desired code again; to stay rolled back, revert the source.
  - The module runs where the sources are (the controller; use C(delegate_to=localhost)), under
    the project's virtual environment Python (C(.venv/bin/python), made by C(make setup)), which
    has C(tlops) installed.
author: tinyllama-ops
options:
  name:
    description: The function's name.
    type: str
    required: true
  state:
    description:
      - V(present) builds and deploys the function; V(absent) deletes it with all its versions and
        aliases, but only if it carries every tag in O(tags) (a look-alike without them is left
        alone, with a warning).
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - The function's source directory (for example C(lambda_src/router)). Every file in it is
        shipped except C(__pycache__); native libraries (C(.so), C(.pyd), C(.dylib)) are refused,
        and so is a zip over 5 MiB.
      - A relative path is resolved against the working directory of the module's process, which
        for a local run (C(connection=local) or C(delegate_to=localhost)) is the playbook's
        directory, not the one C(ansible-playbook) was started in; roles pass an absolute path
        (for example C({{ playbook_dir }}/../lambda_src/router)).
      - Required when O(state=present), unless O(rollback=true).
    type: path
  handler:
    description: The handler, C(<module>.<function>); the module's file must be in O(source).
    type: str
    default: handler.lambda_handler
  runtime:
    description:
      - A Python runtime. Bytecode is shipped only when the Python running this module is the
        runtime's version.
    type: str
    default: python3.12
  memory_size:
    description: Memory in MB, 128 to 10240.
    type: int
    default: 512
  timeout:
    description: Time limit of one invocation in seconds, 1 to 900.
    type: int
    default: 10
  role_arn:
    description:
      - ARN of the execution role. Required when O(state=present), unless O(rollback=true).
    type: str
  environment:
    description:
      - Environment variables, names to string values (quote numbers). Omitted, the function's
        variables are left as they are.
      - Values are shown in the diff and the result; keep secrets out (read them from SSM or
        Secrets Manager at run time).
    type: dict
  tracing_mode:
    description: X-Ray tracing mode.
    type: str
    choices: [Active, PassThrough]
    default: Active
  architecture:
    description: Instruction set the function runs on.
    type: str
    choices: [x86_64, arm64]
    default: x86_64
  description:
    description: The function's description (and its versions'). Omitted, left as it is.
    type: str
  vpc_subnet_ids:
    description:
      - Subnets the function runs in (to reach a VPC-only service such as ElastiCache). Empty,
        the function runs outside any VPC. Needs O(vpc_security_group_ids) too.
    type: list
    elements: str
    default: []
  vpc_security_group_ids:
    description: Security groups of the function's network interfaces in O(vpc_subnet_ids).
    type: list
    elements: str
    default: []
  alias:
    description: The alias that callers invoke and that is moved to each new version.
    type: str
    default: prod
  keep_versions:
    description:
      - How many of the newest published versions to keep, at least 1. Older versions are
        deleted unless an alias points to one of them.
    type: int
    default: 5
  rollback:
    description:
      - Point O(alias) at the published version before the one it points to now, and change
        nothing else. Fails if there is no such version. Reports a change each time.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the function to become active or for an update to finish.
    type: int
    default: 300
  tags:
    description:
      - Tags of the function (not of its versions). With O(state=absent), the tags the function
        must carry to be deleted (pass at least C(Project=tinyllama)).
      - Omitted, the function's tags are left as they are.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: Remove tags not in O(tags) (keys starting with C(aws:) are never removed).
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
notes:
  - On the local stand-in (moto 5.2.5) C(UpdateFunctionConfiguration) ignores C(TracingConfig) and
    C(UpdateFunctionCode) ignores C(Architectures); the module warns that the change was not
    applied and does not report it as made.
  - The stand-in numbers a new version "count of versions + 1", so after retention deleted a
    version it gives a new version a number already in use (AWS never reuses a number). The module
    warns and deletes the stand-in's stale copy of that number, so the alias resolves to the new
    code.
  - The stand-in lets an aliased version be deleted (AWS refuses); the module never deletes one.
"""

EXAMPLES = r"""
- name: Deploy the router Lambda and keep its last 5 versions
  tl_lambda:
    name: tinyllama-router
    source: "{{ playbook_dir }}/../lambda_src/router"
    role_arn: "{{ router_role_arn }}"
    memory_size: 512
    timeout: 10
    environment:
      TL_REDIS_URL: "rediss://{{ queue_endpoint }}:6379/0"
      TL_RATE_LIMIT: "30"
    alias: prod
    keep_versions: 5
    tags:
      Project: tinyllama
      Role: router
  delegate_to: localhost

- name: Point prod back at the previous version
  tl_lambda:
    name: tinyllama-router
    rollback: true
  delegate_to: localhost

- name: Delete the router, only if it is ours
  tl_lambda:
    name: tinyllama-router
    state: absent
    tags:
      Project: tinyllama
  delegate_to: localhost
"""

RETURN = r"""
function_name:
  description: The function's name.
  returned: always
  type: str
  sample: tinyllama-router
function_arn:
  description: The function's ARN, unqualified; null in check mode before it exists.
  returned: always
  type: str
  sample: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-router
alias_arn:
  description: The alias' ARN; null in check mode before it exists.
  returned: when O(state=present)
  type: str
  sample: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-router:prod
version:
  description: The published version the alias points to; null in check mode when a version would
    be published.
  returned: when O(state=present)
  type: str
  sample: "7"
code_sha256:
  description: Base64 of the SHA-256 of the zip (Lambda's CodeSha256) of that version.
  returned: when O(state=present)
  type: str
  sample: 0IL6qKMkyAP4zQu4VCOhAAjGY0P/8C+fiYw1U9RzBJk=
code_size:
  description: Size of that zip in bytes.
  returned: when O(state=present)
  type: int
  sample: 573466
published:
  description: Whether a version was published (in check mode, would be).
  returned: when O(state=present)
  type: bool
deleted_versions:
  description: Versions deleted by the retention policy (in check mode, that would be).
  returned: when O(state=present)
  type: list
  elements: str
  sample: ["1", "2"]
configuration:
  description: The managed configuration of the version the alias points to.
  returned: when O(state=present)
  type: dict
  contains:
    role_arn: {description: Execution role ARN., type: str, returned: always}
    handler: {description: Handler., type: str, returned: always}
    runtime: {description: Runtime., type: str, returned: always}
    memory_size: {description: Memory in MB., type: int, returned: always}
    timeout: {description: Time limit in seconds., type: int, returned: always}
    environment: {description: Environment variables., type: dict, returned: always}
    tracing_mode: {description: X-Ray tracing mode., type: str, returned: always}
    architecture: {description: Instruction set., type: str, returned: always}
    description: {description: Description., type: str, returned: always}
    vpc_subnet_ids: {description: Subnets; empty outside a VPC., type: list, returned: always}
    vpc_security_group_ids: {description: Security groups, sorted., type: list, returned: always}
"""

import re
from pathlib import Path

from ansible.module_utils.tl_aws import (
    AnsibleAWSModule,
    ClientError,
    Failure,
    is_not_found,
    result,
    retrying_client,
    run,
    tag_changes,
    wait_until,
)

try:
    from tlops import packaging
except ImportError:  # reported when a zip must be built: not the project's interpreter
    packaging = None

WAIT_DELAY = 2.0  # seconds between polls of an update in progress
PENDING = "(new version)"  # what check mode shows for a version it would publish
ROLE_PROPAGATION_S = 90  # how long a new role may be refused by Lambda (IAM propagation)
ALIAS_NAME = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]{1,128}")
# snake_case name → how to read it from a FunctionConfiguration
_READ = {
    "role_arn": lambda c: c.get("Role"),
    "handler": lambda c: c.get("Handler"),
    "runtime": lambda c: c.get("Runtime"),
    "memory_size": lambda c: c.get("MemorySize"),
    "timeout": lambda c: c.get("Timeout"),
    "environment": lambda c: dict((c.get("Environment") or {}).get("Variables") or {}),
    "tracing_mode": lambda c: (c.get("TracingConfig") or {}).get("Mode", "PassThrough"),
    "architecture": lambda c: (c.get("Architectures") or ["x86_64"])[0],
    "description": lambda c: c.get("Description") or "",
    "vpc_subnet_ids": lambda c: sorted((c.get("VpcConfig") or {}).get("SubnetIds") or []),
    "vpc_security_group_ids": lambda c: sorted(
        (c.get("VpcConfig") or {}).get("SecurityGroupIds") or []
    ),
}
# Why a field may not take on the stand-in (moto 5.2.5); AWS applies all of them.
_STAND_IN_IGNORES = {
    "tracing_mode": "TracingConfig in UpdateFunctionConfiguration",
    "architecture": "Architectures in UpdateFunctionCode",
}


# --- reading ------------------------------------------------------------------
def configuration_of(config):
    """The managed fields of a FunctionConfiguration, snake_case."""
    return {key: read(config) for key, read in _READ.items()}


def state_of(config):
    """What a version is made of: its code and its managed configuration."""
    return config.get("CodeSha256"), configuration_of(config)


def get_function(client, name):
    try:
        return client.get_function(FunctionName=name, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def published_versions(client, name):
    """version number (str) → its FunctionConfiguration, $LATEST left out."""
    versions, marker = {}, None
    while True:
        page = client.list_versions_by_function(
            FunctionName=name, aws_retry=True, **({"Marker": marker} if marker else {})
        )
        for config in page.get("Versions", []):
            if config["Version"] != "$LATEST":
                versions[config["Version"]] = config
        marker = page.get("NextMarker")
        if not marker:
            return versions


def aliases_of(client, name):
    """alias name → the alias (FunctionVersion, AliasArn, RoutingConfig)."""
    aliases, marker = {}, None
    while True:
        page = client.list_aliases(
            FunctionName=name, aws_retry=True, **({"Marker": marker} if marker else {})
        )
        aliases.update({alias["Name"]: alias for alias in page.get("Aliases", [])})
        marker = page.get("NextMarker")
        if not marker:
            return aliases


def aliased_versions(aliases):
    """Every version an alias routes to (its version and any weighted extra ones)."""
    found = set()
    for alias in aliases.values():
        found.add(alias.get("FunctionVersion"))
        found.update((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    return found


def wait_settled(client, name, timeout):
    """Wait until the function is Active and no update is in progress; its configuration."""

    def settled(config):
        for field, reason in (
            ("State", "StateReason"),
            ("LastUpdateStatus", "LastUpdateStatusReason"),
        ):
            if config.get(field) == "Failed":
                raise Failure(
                    f"function {name}: {field} is Failed "
                    f"({config.get(reason, 'no reason given')}); "
                    "fix the cause (role, code, configuration) and run again"
                )
        return config.get("State", "Active") == "Active" and config.get(
            "LastUpdateStatus", "Successful"
        ) not in ("InProgress",)

    return wait_until(
        lambda: client.get_function_configuration(FunctionName=name, aws_retry=True),
        settled,
        what=f"function {name} to be Active with no update in progress",
        timeout=timeout,
        delay=WAIT_DELAY,
    )


# --- validating and building ---------------------------------------------------
def validate(params):
    if params["keep_versions"] < 1:
        raise Failure("keep_versions must be at least 1 (the version the alias points to is kept)")
    if not ALIAS_NAME.fullmatch(params["alias"]):
        raise Failure(
            f"alias {params['alias']!r} is not a valid alias name: letters, digits, - and _, "
            "not only digits"
        )
    if params["wait_timeout"] < 1:
        raise Failure("wait_timeout must be at least 1 second")
    if params["rollback"] and params["state"] == "absent":
        raise Failure("rollback applies to state=present: drop rollback or state=absent")
    if params["state"] == "absent" or params["rollback"]:
        return
    for option in ("source", "role_arn"):
        if not params[option]:
            raise Failure(f"{option} is required when state=present (and rollback is false)")
    if not 128 <= params["memory_size"] <= 10240:
        raise Failure(f"memory_size {params['memory_size']} is outside 128..10240 MB")
    if not 1 <= params["timeout"] <= 900:
        raise Failure(f"timeout {params['timeout']} is outside 1..900 seconds")
    if bool(params["vpc_subnet_ids"]) != bool(params["vpc_security_group_ids"]):
        raise Failure(
            "vpc_subnet_ids and vpc_security_group_ids go together: give both to run the "
            "function in a VPC, or neither"
        )
    for key, value in (params["environment"] or {}).items():
        if not isinstance(value, str):
            raise Failure(
                f"environment.{key} is a {type(value).__name__}, Lambda takes strings: quote it"
            )


def desired_configuration(params, current=None):
    """The managed fields as asked; unmanaged ones (None) keep `current`'s value."""
    desired = {key: params[key] for key in _READ}
    for key in ("vpc_subnet_ids", "vpc_security_group_ids"):
        desired[key] = sorted(desired[key] or [])
    for key in ("environment", "description"):
        if desired[key] is None:
            desired[key] = (current or {}).get(key, {} if key == "environment" else "")
    return desired


def vpc_config(desired):
    """VpcConfig as Lambda takes it; empty lists take the function out of a VPC."""
    return {
        "SubnetIds": desired["vpc_subnet_ids"],
        "SecurityGroupIds": desired["vpc_security_group_ids"],
    }


def build_code(params):
    if packaging is None:
        raise Failure(
            "tl_lambda needs the tlops package, which this Python lacks: run the module with "
            "the project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup` "
            "creates it)"
        )
    source = Path(params["source"])
    source = source if source.is_absolute() else Path.cwd() / source
    try:
        return packaging.build_source_zip(
            source, handler=params["handler"], runtime=params["runtime"]
        )
    except packaging.PackagingError as exc:
        raise Failure(f"cannot package {params['name']}: {exc}") from None


# --- writing ---------------------------------------------------------------------
def create_function(client, params, build, desired):
    """Create the function, waiting (bounded) for a new role to become assumable, then for
    the function to be Active; its configuration."""
    name = params["name"]

    def attempt():
        try:
            return client.create_function(
                FunctionName=name,
                Runtime=desired["runtime"],
                Role=desired["role_arn"],
                Handler=desired["handler"],
                Code={"ZipFile": build.data},
                Description=desired["description"],
                Timeout=desired["timeout"],
                MemorySize=desired["memory_size"],
                Environment={"Variables": desired["environment"]},
                TracingConfig={"Mode": desired["tracing_mode"]},
                Architectures=[desired["architecture"]],
                VpcConfig=vpc_config(desired),
                Tags=params["tags"] or {},
                Publish=False,
                aws_retry=True,
            )
        except ClientError as exc:
            # IAM is eventually consistent: a role made a moment ago is refused for a while.
            message = exc.response.get("Error", {}).get("Message", "")
            if exc.response.get("Error", {}).get("Code") == "InvalidParameterValueException" and (
                "cannot be assumed" in message
            ):
                return None
            raise

    wait_until(
        attempt,
        lambda made: made is not None,
        what=f"role {desired['role_arn']} to be assumable by Lambda (check its trust policy)",
        timeout=min(params["wait_timeout"], ROLE_PROPAGATION_S),
        delay=WAIT_DELAY * 2,
    )
    return wait_settled(client, name, params["wait_timeout"])


def update_function(client, params, build, latest, desired):
    """Update code and/or configuration where they differ; the configuration afterwards."""
    name, timeout = params["name"], params["wait_timeout"]
    now = configuration_of(latest)
    if latest["CodeSha256"] != build.code_sha256 or now["architecture"] != desired["architecture"]:
        client.update_function_code(
            FunctionName=name,
            ZipFile=build.data,
            Architectures=[desired["architecture"]],
            Publish=False,
            aws_retry=True,
        )
        latest = wait_settled(client, name, timeout)  # a second update would be refused
    if any(now[key] != desired[key] for key in desired if key != "architecture"):
        client.update_function_configuration(
            FunctionName=name,
            Role=desired["role_arn"],
            Handler=desired["handler"],
            Runtime=desired["runtime"],
            MemorySize=desired["memory_size"],
            Timeout=desired["timeout"],
            Environment={"Variables": desired["environment"]},
            TracingConfig={"Mode": desired["tracing_mode"]},
            Description=desired["description"],
            VpcConfig=vpc_config(desired),
            aws_retry=True,
        )
        latest = wait_settled(client, name, timeout)
    return latest


def warn_not_applied(name, latest, build, desired, warn):
    """Warn about fields the endpoint accepted an update for but did not apply (the stand-in
    ignores a few); they are not reported as changed."""
    after = configuration_of(latest)
    missed = [key for key in desired if after[key] != desired[key]]
    if latest["CodeSha256"] != build.code_sha256:
        missed.append("code_sha256")
    if missed:
        details = [
            f"{key} (still {after.get(key, latest['CodeSha256'])!r}"
            + (
                f"; the local stand-in ignores {_STAND_IN_IGNORES[key]})"
                if key in _STAND_IN_IGNORES
                else ")"
            )
            for key in missed
        ]
        warn(
            f"function {name}: the endpoint accepted the update but did not apply "
            f"{', '.join(details)}; not reported as changed. AWS applies them; on the stand-in, "
            "recreate the function (state=absent, then present) to change them"
        )


def publish(client, name, latest, versions, warn):
    """Publish $LATEST; (version, its configuration, whether a new one was made)."""
    config = client.publish_version(
        FunctionName=name,
        CodeSha256=latest["CodeSha256"],
        Description=latest.get("Description") or "",
        aws_retry=True,
    )
    number = config["Version"]
    if number not in versions:
        return number, config, True
    if number == _newest(versions) and state_of(versions[number]) == state_of(latest):
        return number, versions[number], False  # AWS: nothing changed since the last publish
    # Only the stand-in gets here: it numbers a version "count + 1", so after a deletion it
    # reuses a number, and its stale copy would shadow the new one under that number.
    client.delete_function(FunctionName=name, Qualifier=number, aws_retry=True)
    warn(
        f"function {name}: the endpoint published version {number} although a version {number} "
        "already existed (the local stand-in numbers versions count+1, so it reuses a number once "
        "retention deleted one; AWS never does): deleted the stand-in's stale copy of version "
        f"{number} so that the number and the alias resolve to the new code; the code that copy "
        "held is no longer a version there"
    )
    return number, config, True


def point_alias(client, name, alias, version, aliases):
    """Create or move the alias; its ARN."""
    current = aliases.get(alias)
    if current is not None and current["FunctionVersion"] == version:
        return current["AliasArn"]
    call = client.create_alias if current is None else client.update_alias
    aliases[alias] = call(FunctionName=name, Name=alias, FunctionVersion=version, aws_retry=True)
    return aliases[alias]["AliasArn"]


def _order(version):
    return int(version) if version.isdigit() else float("inf")  # a pending one is the newest


def _newest(versions):
    return max(versions, key=_order) if versions else None


def retire(versions, keep, protected):
    """Published versions beyond the newest `keep` that no alias points to, oldest first."""
    ordered = sorted(versions, key=_order)
    return [v for v in ordered[: max(len(ordered) - keep, 0)] if v not in protected]


def apply_tags(client, arn, current, params, check_mode):
    """Set and purge tags the amazon.aws way; the tags afterwards and whether they changed."""
    to_set, to_remove = tag_changes(current, params["tags"], params["purge_tags"])
    if not check_mode:
        if to_set:
            client.tag_resource(Resource=arn, Tags=to_set, aws_retry=True)
        if to_remove:
            client.untag_resource(Resource=arn, TagKeys=to_remove, aws_retry=True)
    after = {k: v for k, v in {**current, **to_set}.items() if k not in to_remove}
    return after, bool(to_set or to_remove)


def _view(sha, configuration, alias_version, tags, versions):
    return {
        "code_sha256": sha,
        "configuration": configuration,
        "alias_version": alias_version,
        "tags": tags,
        "versions": sorted(versions, key=_order),
    }


def _outcome(changed, before, after, **facts):
    return {"changed": changed, "before": before, "after": after, **facts}


# --- the entry points --------------------------------------------------------------
def create(client, params, check_mode, build):
    """A new function: create it, wait until Active, publish version 1, alias it."""
    name, alias = params["name"], params["alias"]
    desired = desired_configuration(params)
    if check_mode:
        after = _view(build.code_sha256, desired, PENDING, params["tags"] or {}, [PENDING])
        return _outcome(
            True, {}, after, function_name=name, function_arn=None, alias_arn=None, version=None,
            code_sha256=build.code_sha256, code_size=build.size, published=True,
            deleted_versions=[], configuration=desired,
        )  # fmt: skip
    latest = create_function(client, params, build, desired)
    arn = latest["FunctionArn"].removesuffix(":$LATEST")
    version = client.publish_version(
        FunctionName=name,
        CodeSha256=latest["CodeSha256"],
        Description=desired["description"],
        aws_retry=True,
    )["Version"]
    alias_arn = point_alias(client, name, alias, version, {})
    tags = client.list_tags(Resource=arn, aws_retry=True).get("Tags") or {}
    after = _view(latest["CodeSha256"], configuration_of(latest), version, tags, [version])
    return _outcome(
        True, {}, after, function_name=name, function_arn=arn,
        alias_arn=alias_arn, version=version, code_sha256=latest["CodeSha256"],
        code_size=build.size, published=True, deleted_versions=[],
        configuration=configuration_of(latest),
    )  # fmt: skip


def choose_version(client, name, latest, versions, alias_before, target, changed, check_mode, warn):
    """The version the alias should point to, and whether it is (would be) newly published;
    a version published here is added to `versions`."""
    if not changed and alias_before in versions and state_of(versions[alias_before]) == target:
        return alias_before, False
    newest = _newest(versions)
    if not changed and newest and state_of(versions[newest]) == target:
        return newest, False  # AWS would hand back this one for a publish with nothing changed
    if check_mode:
        versions[PENDING] = None
        return PENDING, True
    version, config, published = publish(client, name, latest, versions, warn)
    versions[version] = config
    return version, published


def ensure_present(client, params, check_mode, warn):
    name, alias = params["name"], params["alias"]
    build = build_code(params)
    found = get_function(client, name)
    if found is None:
        return create(client, params, check_mode, build)
    latest = found["Configuration"]
    arn = latest["FunctionArn"].removesuffix(":$LATEST")
    if latest.get("PackageType", "Zip") != "Zip":
        raise Failure(
            f"function {name} is a {latest['PackageType']} function; tl_lambda manages zip "
            "functions: delete it (state=absent) or choose another name"
        )
    if not check_mode and latest.get("LastUpdateStatus") == "InProgress":
        latest = wait_settled(client, name, params["wait_timeout"])  # someone else's update
    now = configuration_of(latest)
    desired = desired_configuration(params, now)
    versions = published_versions(client, name)
    aliases = aliases_of(client, name)
    alias_before = (aliases.get(alias) or {}).get("FunctionVersion")
    tags_now = found.get("Tags") or {}
    before = _view(latest["CodeSha256"], now, alias_before, tags_now, versions)

    if check_mode:
        code_or_config_changed = latest["CodeSha256"] != build.code_sha256 or now != desired
        target = (build.code_sha256, desired)
    else:
        updated = update_function(client, params, build, latest, desired)
        warn_not_applied(name, updated, build, desired, warn)
        code_or_config_changed = state_of(updated) != state_of(latest)
        latest, target = updated, state_of(updated)

    version, published = choose_version(
        client, name, latest, versions, alias_before, target, code_or_config_changed,
        check_mode, warn,
    )  # fmt: skip
    if check_mode:
        alias_arn = (aliases.get(alias) or {}).get("AliasArn")
        aliases[alias] = {"FunctionVersion": version}
    else:
        alias_arn = point_alias(client, name, alias, version, aliases)
    deleted = retire(versions, params["keep_versions"], aliased_versions(aliases))
    if not check_mode:
        for number in deleted:  # never an aliased one: AWS refuses, the stand-in would not
            client.delete_function(FunctionName=name, Qualifier=number, aws_retry=True)
    tags_after, tags_changed = apply_tags(client, arn, tags_now, params, check_mode)
    after = _view(*target, version, tags_after, [v for v in versions if v not in deleted])
    changed = code_or_config_changed or version != alias_before or bool(deleted) or tags_changed
    return _outcome(
        changed, before, after, function_name=name, function_arn=arn, alias_arn=alias_arn,
        version=None if version == PENDING else version, code_sha256=target[0],
        code_size=build.size, published=published, deleted_versions=deleted,
        configuration=target[1],
    )  # fmt: skip


def ensure_rolled_back(client, params, check_mode):
    """Point the alias at the published version before the one it points to now."""
    name, alias = params["name"], params["alias"]
    found = get_function(client, name)
    if found is None:
        raise Failure(f"function {name} does not exist: nothing to roll back; deploy it first")
    arn = found["Configuration"]["FunctionArn"].removesuffix(":$LATEST")
    aliases = aliases_of(client, name)
    if alias not in aliases:
        raise Failure(f"function {name} has no alias {alias}: nothing to roll back")
    current = aliases[alias]["FunctionVersion"]
    if not current.isdigit():
        raise Failure(
            f"alias {alias} of {name} points at {current}, not a published version: "
            "deploy with rollback=false first"
        )
    versions = published_versions(client, name)
    older = [v for v in versions if int(v) < int(current)]
    if not older:
        raise Failure(
            f"alias {alias} of {name} points at version {current} and no published version "
            "before it is left (the first one, or retention deleted older ones): nothing to roll "
            "back to"
        )
    target = max(older, key=int)
    alias_arn = aliases[alias]["AliasArn"]
    if not check_mode:
        alias_arn = point_alias(client, name, alias, target, aliases)
    config = versions[target]
    tags = found.get("Tags") or {}
    view = _view(config["CodeSha256"], configuration_of(config), target, tags, versions)
    before = {**view, "alias_version": current}
    if current in versions:
        before.update(
            code_sha256=versions[current]["CodeSha256"],
            configuration=configuration_of(versions[current]),
        )
    return _outcome(
        True, before, view, function_name=name, function_arn=arn, alias_arn=alias_arn,
        version=target, code_sha256=config["CodeSha256"], code_size=config.get("CodeSize"),
        published=False, deleted_versions=[], configuration=configuration_of(config),
    )  # fmt: skip


def ensure_absent(client, params, check_mode, warn):
    """Delete the function (all versions and aliases) if it carries every tag given."""
    name = params["name"]
    found = get_function(client, name)
    if found is None:
        return _outcome(False, {}, {}, function_name=name, function_arn=None)
    arn = found["Configuration"]["FunctionArn"].removesuffix(":$LATEST")
    tags = found.get("Tags") or {}
    before = {
        "code_sha256": found["Configuration"]["CodeSha256"],
        "configuration": configuration_of(found["Configuration"]),
        "tags": tags,
    }
    missing = {k: v for k, v in (params["tags"] or {}).items() if tags.get(k) != v}
    if missing:
        warn(
            f"function {name} was not deleted: it is not tagged "
            + ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            + " (it is not one this toolkit made, or its tags were changed)"
        )
        return _outcome(False, before, before, function_name=name, function_arn=arn)
    if not check_mode:
        client.delete_function(FunctionName=name, aws_retry=True)
    return _outcome(True, before, {}, function_name=name, function_arn=arn)


def ensure(client, params, check_mode, warn):
    validate(params)
    if params["state"] == "absent":
        return ensure_absent(client, params, check_mode, warn)
    if params["rollback"]:
        return ensure_rolled_back(client, params, check_mode)
    return ensure_present(client, params, check_mode, warn)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        source=dict(type="path"),
        handler=dict(type="str", default="handler.lambda_handler"),
        runtime=dict(type="str", default="python3.12"),
        memory_size=dict(type="int", default=512),
        timeout=dict(type="int", default=10),
        role_arn=dict(type="str"),
        environment=dict(type="dict"),
        tracing_mode=dict(type="str", choices=["Active", "PassThrough"], default="Active"),
        architecture=dict(type="str", choices=["x86_64", "arm64"], default="x86_64"),
        description=dict(type="str"),
        vpc_subnet_ids=dict(type="list", elements="str", default=[]),
        vpc_security_group_ids=dict(type="list", elements="str", default=[]),
        alias=dict(type="str", default="prod"),
        keep_versions=dict(type="int", default=5),
        rollback=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    client = retrying_client(module, "lambda")

    def action():
        outcome = ensure(client, module.params, module.check_mode, module.warn)
        return result(module, **outcome)

    run(module, action)


if __name__ == "__main__":
    main()
