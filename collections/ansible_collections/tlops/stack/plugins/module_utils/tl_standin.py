# Shared by the tl_* modules in plugins/modules/. Apache-2.0.
"""What the local stand-in lacks, in one table, and the calls a module makes about it.

The local stack and the module tests run against moto (5.2.5, server mode) instead of
AWS. Where it lacks a call, or accepts one and ignores part of it, a module recognises
the answer at that one call, warns in the words of the table and carries on as its
documentation says, instead of failing or reporting a change it did not make. AWS
never answers that way, so on AWS none of it happens.

Each gap, under its id, holds:

- `calls`: the AWS operations at whose answer a module notices it;
- `refused`: how the endpoint's answer to them shows it, a test of the exception
  (`unsupported()` of tl_aws, or an error code); None for a gap that shows only in what
  the module reads back afterwards;
- `says`: the warning (or, for a failure, the hint), with the `{fields}` the module
  fills in.

A module uses it as
`from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps`, then
`gaps.optional(call, gap_id, ...)` around a call a gap concerns,
`gaps.warn(warn, gap_id, ...)` where it falls back and `gaps.text(gap_id, ...)` for a
failure's message. docs/modules.md explains the table.
"""

from __future__ import annotations

from collections import namedtuple

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    ResponseParserError,
    unsupported,
)

__all__ = ["GAPS", "LACKING", "Gap", "optional", "text", "warn"]

Gap = namedtuple("Gap", ["calls", "refused", "says"])

LACKING = object()  # what optional() answers when the endpoint refused the call as the gap says


def _answers(code):
    """A test for an error the endpoint answers with `code`."""

    def test(exc):
        return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == code

    return test


_LACKS = "as on the local stand-in moto 5.2.5, which lacks it"

GAPS = {
    "lambda-ignored-update-fields": Gap(
        calls=("lambda:UpdateFunctionConfiguration", "lambda:UpdateFunctionCode"),
        refused=None,  # both succeed; the function read back afterwards still has the old value
        says=(
            "function {function}: the endpoint accepted the update but did not apply {fields}; "
            "not reported as changed. AWS applies them; the local stand-in ignores TracingConfig "
            "in UpdateFunctionConfiguration and Architectures in UpdateFunctionCode: there, "
            "recreate the function (state=absent, then present) to change them"
        ),
    ),
    "lambda-reused-version-number": Gap(
        calls=("lambda:PublishVersion",),
        refused=None,  # the answer is a number the function already has, for other code
        says=(
            "function {function}: the endpoint published version {number} although a version "
            "{number} already existed (the local stand-in numbers versions count+1, so it "
            "reuses a number once retention deleted one; AWS never does): deleted the "
            "stand-in's stale copy of version {number} so that the number and the alias "
            "resolve to the new code; the code that copy held is no longer a version there"
        ),
    ),
    "budgets-no-update-budget": Gap(
        calls=("budgets:UpdateBudget",),
        refused=unsupported,
        says=(
            "the stand-in lacks update_budget: the budget was deleted and re-created with its "
            "notifications"
        ),
    ),
    "budgets-no-subscriber-calls": Gap(
        calls=("budgets:DescribeSubscribersForNotification",),  # Create/Delete are lacking too
        refused=unsupported,
        says=(
            "the stand-in cannot list subscribers (describe_subscribers_for_notification is not "
            "implemented): the subscribers of {count} existing notification(s) were not "
            "compared and may differ from `notifications`"
        ),
    ),
    "budgets-no-tag-calls": Gap(
        calls=("budgets:ListTagsForResource",),  # TagResource and UntagResource too
        refused=unsupported,
        says=(
            "the stand-in cannot list budget tags (list_tags_for_resource is not implemented): "
            "{then}"
        ),
    ),
    "cognito-idp-no-tag-calls": Gap(
        calls=("cognito-idp:TagResource", "cognito-idp:UntagResource"),
        refused=unsupported,
        says=(
            "the endpoint does not implement Cognito TagResource/UntagResource (the local "
            "stand-in, moto 5.2.5, answers HTTP 500); the tags were written through "
            "UpdateUserPool's UserPoolTags instead, with the pool's full configuration, "
            "and read back"
        ),
    ),
    "apigatewayv2-no-get-authorizers": Gap(
        calls=("apigatewayv2:GetAuthorizers",),
        refused=unsupported,
        says=(
            "the stand-in lacks apigatewayv2 get_authorizers: the authorizer is looked up "
            "through the routes that use it instead (an authorizer no route uses is not seen)"
        ),
    ),
    "apigatewayv2-no-update-stage": Gap(
        calls=("apigatewayv2:UpdateStage",),
        refused=unsupported,
        says=(
            "the stand-in lacks apigatewayv2 update_stage: stage {stage!r} is being deleted "
            "and created again with the new settings instead (AWS updates it in place)"
        ),
    ),
    "apigatewayv2-no-create-deployment": Gap(
        calls=("apigatewayv2:CreateDeployment",),
        refused=unsupported,
        says=(
            "the stand-in lacks apigatewayv2 create_deployment: the changes were made but not "
            "deployed to stage {stage!r} (stage.auto_deploy is false); nothing was deployed"
        ),
    ),
    "elasticache-no-parameter-groups": Gap(
        calls=(
            "elasticache:DescribeCacheParameterGroups",
            "elasticache:CreateCacheParameterGroup",
            "elasticache:DeleteCacheParameterGroup",
        ),
        refused=unsupported,  # an HTML page botocore cannot parse (ResponseParserError)
        says=(
            "the endpoint does not implement ElastiCache cache parameter groups ({call} failed, "
            + _LACKS
            + "): {then}"
        ),
    ),
    "elasticache-no-subnet-group-changes": Gap(
        calls=("elasticache:ModifyCacheSubnetGroup", "elasticache:DeleteCacheSubnetGroup"),
        refused=unsupported,
        says="the endpoint does not implement {call} (" + _LACKS + "): {then}",
    ),
    "elasticache-no-member-clusters": Gap(
        calls=("elasticache:DescribeCacheClusters",),
        refused=_answers("CacheClusterNotFound"),  # for a member its replication group lists
        says=(
            "the endpoint reports no member cluster for replication group {group} "
            "(DescribeCacheClusters: CacheClusterNotFound, as on the local stand-in moto "
            "5.2.5, which creates none): its engine version, security groups, subnet group and "
            "parameter group could not be read, so they were neither compared nor changed"
        ),
    ),
    "logs-no-query-definitions": Gap(
        calls=(
            "logs:DescribeQueryDefinitions",
            "logs:PutQueryDefinition",
            "logs:DeleteQueryDefinition",
        ),
        refused=unsupported,
        says=(
            "the endpoint does not implement CloudWatch Logs query definitions ({call} failed, "
            + _LACKS
            + "): query definition {name!r} was neither read nor written; the query itself "
            "still runs locally with `tlops local logs query`"
        ),
    ),
    "servicequotas-no-ec2-quotas": Gap(
        calls=("servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota"),
        refused=unsupported,  # GetServiceQuota: NoSuchResourceException; the default: lacking
        says=(
            "the endpoint serves no EC2 quota {code} (the local stand-in moto 5.2.5 serves VPC "
            "quotas only and lacks GetAWSDefaultServiceQuota): the G-instance vCPU quota was "
            "not read, so nothing says the account may launch the node; on AWS it is read"
        ),
    ),
    "iam-no-policy-simulator": Gap(
        calls=("iam:SimulatePrincipalPolicy",),
        refused=unsupported,
        says=(
            "the endpoint has no IAM policy simulator (the local stand-in moto 5.2.5 lacks "
            "SimulatePrincipalPolicy): no role's calls were put to it; the project's own "
            "evaluator judged them, and on an account the simulator is asked"
        ),
    ),
    "ec2-no-reachability-analyzer": Gap(
        calls=("ec2:CreateNetworkInsightsPath",),
        refused=unsupported,
        says=(
            "the endpoint has no Reachability Analyzer (the local stand-in moto 5.2.5 lacks "
            "CreateNetworkInsightsPath): no path was traced; the project's path checker "
            "judged them, and on an account the analyzer is asked"
        ),
    ),
    "elasticache-deletes-never-finish": Gap(
        calls=("elasticache:DescribeReplicationGroups",),
        refused=None,  # a deleted group stays `deleting` there: only a bounded wait ends
        says="the local stand-in moto 5.2.5 never finishes a delete - {then}",
    ),
}


def optional(call, gap, *args, **kwargs):
    """`call(*args, **kwargs)`, or LACKING where the endpoint refused it as `gap` says.

    Any other error is raised as it came.
    """
    try:
        return call(*args, **kwargs)
    except (ClientError, ResponseParserError) as exc:
        if GAPS[gap].refused(exc):
            return LACKING
        raise


def text(gap, **fields):
    """What the module says about `gap`, its fields filled in."""
    return GAPS[gap].says.format(**fields)


def warn(module_warn, gap, **fields):
    """Warn, through the module's `warn`, that the module worked around `gap`."""
    module_warn(text(gap, **fields))
