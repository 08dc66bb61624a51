#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Packer: no maintained module drives `packer build` (community.general has none, and the
# Python packages for it are broken or unfit: see tlops.tooling.packer).

DOCUMENTATION = r"""
---
module: tl_packer
short_description: Run a Packer build and return the artifacts of its manifest
description:
  - Runs C(packer build) on a template folder through C(tlops.tooling.packer), with a timeout,
    and returns the artifacts its manifest names for this run (for amazon-ebs, the AMI id
    per region).
  - Every line Packer prints is appended to O(log_path) as it comes, so a bake that takes
    twenty minutes can be followed with C(tail -f) while the task runs; the last lines are
    in the failure message.
  - Past O(timeout) Packer gets SIGINT (it deletes the instance, key pair and security group
    it made), then, O(interrupt_grace) seconds later, whatever is left is killed.
  - Variables reach Packer as C(PKR_VAR_*) environment variables, never as arguments; each
    must be declared by the template. O(sensitive_variables) are kept out of Ansible's
    output as well.
  - The play's AWS connection (region, credentials, profile) is handed to Packer in its
    environment, so a bake talks to the same account as the rest of the play.
    O(endpoint_url) is accepted for module_defaults and not used, since Packer's amazon-ebs
    talks to AWS itself.
  - With Debian's Packer 1.6.6 the template is staged without what that version predates
    (C(plugins.pkr.hcl), amazon-ebs C(metadata_options)); from 1.7 on, C(packer init) must
    have installed the pinned plugins.
  - In check mode nothing runs; the result says a build would run.
  - It needs the tlops package, so it runs with the project's Python (the controller's
    C(.venv)).
author: tinyllama-ops
options:
  template_dir:
    description: The folder of C(*.pkr.hcl) files; it must declare a C(manifest_path) variable.
    type: path
    required: true
  only:
    description: The builds to run, as C(build.type.name) (e.g. C(node.null.local)); default all.
    type: list
    elements: str
    default: []
  variables:
    description: Template variables; lists, maps, numbers and booleans keep their types.
    type: dict
    default: {}
  sensitive_variables:
    description: More template variables, never shown by Ansible (tokens).
    type: dict
    default: {}
  timeout:
    description: Seconds the build may run in all.
    type: int
    default: 3600
  interrupt_grace:
    description: Seconds Packer has to clean up after the interrupt at O(timeout).
    type: int
    default: 300
  log_path:
    description: File the output is appended to, line by line; its folder must exist.
    type: path
  binary:
    description: The packer executable.
    type: str
    default: packer
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Bake the node image on AWS
  tlops.stack.tl_packer:
    template_dir: "{{ playbook_dir }}/../packer"
    only: [node.amazon-ebs.gpu]
    variables: {aws_region: eu-west-1, instance_type: g4dn.xlarge}
    timeout: 3600
    log_path: /tmp/bake.log
  register: baked

- name: Publish it
  community.aws.ssm_parameter:
    name: /tl-fif/latest_ami_id
    value: "{{ baked.artifact.images['eu-west-1'] }}"
"""

RETURN = r"""
changed:
  description: Whether the build made an image (the null builder makes none).
  type: bool
  returned: always
artifacts:
  description: This run's entries of the manifest, one per build.
  type: list
  elements: dict
  returned: always
  contains:
    name: {description: The source's name (C(gpu), C(local))., type: str}
    builder_type: {description: The builder (C(amazon-ebs), C(null))., type: str}
    artifact_id: {description: What was made (C(eu-west-1:ami-0abc) for amazon-ebs)., type: str}
    images: {description: Region to AMI id (empty for builders that make no AMI)., type: dict}
    custom_data: {description: The manifest's custom data (the image's tags)., type: dict}
    run_uuid: {description: Packer's id of this run., type: str}
artifact:
  description: The first of O(artifacts) (the one when a single build ran); empty in check mode.
  type: dict
  returned: always
tail:
  description: The last lines Packer printed.
  type: list
  elements: str
  returned: always
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    run,
)

try:
    from tlops.tooling import packer
except ImportError:  # reported in bake(): not the project's interpreter
    packer = None

# The play's connection, as the variables Packer's AWS SDK reads (only those given).
_CONNECTION_ENV = {
    "access_key": "AWS_ACCESS_KEY_ID",
    "secret_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
    "profile": "AWS_PROFILE",
}


def connection_env(params, region):
    env = {
        variable: params[option]
        for option, variable in _CONNECTION_ENV.items()
        if params.get(option)
    }
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return env


def bake(module):
    if packer is None:
        raise Failure(
            "tl_packer needs the tlops package, which this Python lacks: run it with the "
            "project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup`)"
        )
    params = module.params
    overlap = sorted(set(params["variables"]) & set(params["sensitive_variables"]))
    if overlap:
        raise Failure(f"variables and sensitive_variables both set {', '.join(overlap)}")
    if params["timeout"] < 1 or params["interrupt_grace"] < 0:
        raise Failure("timeout must be at least 1 second and interrupt_grace not negative")
    if module.check_mode:
        return {"changed": True, "artifacts": [], "artifact": {}, "tail": [], "msg": "would build"}
    log = open(params["log_path"], "a", encoding="utf-8") if params["log_path"] else None  # noqa: SIM115
    try:

        def on_line(line):
            if log is not None:
                log.write(line + "\n")
                log.flush()

        artifacts = packer.build(
            params["template_dir"],
            only=params["only"],
            variables={**params["variables"], **params["sensitive_variables"]},
            timeout=params["timeout"],
            grace_s=params["interrupt_grace"],
            on_line=on_line,
            env=connection_env(params, module.region),
            binary=params["binary"],
        )
    except packer.PackerError as exc:
        where = f" (the whole output: {params['log_path']})" if params["log_path"] else ""
        module.fail_json(msg=f"{exc}{where}", tail=exc.tail, artifacts=[], artifact={})
    finally:
        if log is not None:
            log.close()
    found = [artifact.as_dict() for artifact in artifacts]
    # The null builder makes nothing that outlives the build (its provisioners changed a host,
    # which the caller reports); any other builder made an image.
    made = any(artifact.builder_type != "null" for artifact in artifacts)
    return {"changed": made, "artifacts": found, "artifact": found[0], "tail": []}


def main():
    argument_spec = dict(
        template_dir=dict(type="path", required=True),
        only=dict(type="list", elements="str", default=[]),
        variables=dict(type="dict", default={}),
        sensitive_variables=dict(type="dict", default={}, no_log=True),
        timeout=dict(type="int", default=3600),
        interrupt_grace=dict(type="int", default=300),
        log_path=dict(type="path"),
        binary=dict(type="str", default="packer"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: bake(module))


if __name__ == "__main__":
    main()
