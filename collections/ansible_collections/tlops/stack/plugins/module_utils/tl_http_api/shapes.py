# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""Requests from the options and views of AWS's answers: the diff compares views of both."""

from __future__ import annotations


def cors_request(cors):
    if cors is None:
        return None
    config = {"AllowOrigins": cors["allow_origins"], "AllowCredentials": cors["allow_credentials"]}
    for option, field in (
        ("allow_methods", "AllowMethods"),
        ("allow_headers", "AllowHeaders"),
        ("expose_headers", "ExposeHeaders"),
    ):
        if cors[option]:
            config[field] = cors[option]
    if cors["max_age"] is not None:
        config["MaxAge"] = cors["max_age"]
    return config


def cors_view(config):
    if not config:
        return None
    return {
        "allow_origins": sorted(config.get("AllowOrigins", [])),
        "allow_methods": sorted(m.upper() for m in config.get("AllowMethods", [])),
        "allow_headers": sorted(h.lower() for h in config.get("AllowHeaders", [])),
        "expose_headers": sorted(h.lower() for h in config.get("ExposeHeaders", [])),
        "max_age": config.get("MaxAge"),
        "allow_credentials": bool(config.get("AllowCredentials", False)),
    }


def authorizer_request(authorizer):
    return {
        "Name": authorizer["name"],
        "AuthorizerType": "JWT",
        "IdentitySource": [authorizer["identity_source"]],
        "JwtConfiguration": {"Issuer": authorizer["issuer"], "Audience": authorizer["audience"]},
    }


def authorizer_view(item):
    if item is None:
        return None
    jwt = item.get("JwtConfiguration", {})
    return {
        "name": item.get("Name"),
        "issuer": jwt.get("Issuer"),
        "audience": sorted(jwt.get("Audience", [])),
        "identity_source": ",".join(item.get("IdentitySource", [])),
    }


def integration_request(integration):
    return {
        "IntegrationType": "AWS_PROXY",
        "IntegrationMethod": "POST",
        "IntegrationUri": integration["function_arn"],
        "PayloadFormatVersion": integration["payload_format_version"],
        "TimeoutInMillis": integration["timeout_ms"],
    }


def integration_view(item):
    return {
        "function_arn": item.get("IntegrationUri"),
        "payload_format_version": item.get("PayloadFormatVersion"),
        "timeout_ms": item.get("TimeoutInMillis"),
    }


def route_view(item, integration_names, authorizer_id):
    """A route as the diff shows it: the integration by name, the authorization as jwt|none
    (naming the authorizer id when it is not the managed one)."""
    target = item.get("Target") or ""
    integration = integration_names.get(target.removeprefix("integrations/"), target or None)
    if item.get("AuthorizationType") == "JWT":
        used = item.get("AuthorizerId")
        authorization = "jwt" if used and used == authorizer_id else f"jwt (authorizer {used})"
    else:
        authorization = (item.get("AuthorizationType") or "NONE").lower()
    return {"integration": integration, "authorization": authorization}


def throttle_request(settings):
    return {
        "ThrottlingBurstLimit": int(str(settings["burst_limit"])),
        "ThrottlingRateLimit": float(settings["rate_limit"]),
    }


def throttle_view(settings):
    burst = (settings or {}).get("ThrottlingBurstLimit")
    rate = (settings or {}).get("ThrottlingRateLimit")
    if burst is None and rate is None:
        return None
    return {"burst_limit": burst, "rate_limit": None if rate is None else float(rate)}


def stage_request(stage):
    request = {
        "StageName": stage["name"],
        "AutoDeploy": stage["auto_deploy"],
        "DefaultRouteSettings": (
            throttle_request(stage["default_throttling"]) if stage["default_throttling"] else {}
        ),
        "RouteSettings": {
            key: throttle_request(value) for key, value in (stage["route_throttling"] or {}).items()
        },
    }
    if stage["access_log"]:
        request["AccessLogSettings"] = {
            "DestinationArn": stage["access_log"]["destination_arn"],
            "Format": stage["access_log"]["format"],
        }
    return request


def stage_view(item):
    if item is None:
        return None
    log = item.get("AccessLogSettings") or {}
    routes = {key: throttle_view(value) for key, value in (item.get("RouteSettings") or {}).items()}
    return {
        "name": item.get("StageName"),
        "auto_deploy": bool(item.get("AutoDeploy", False)),
        "default_throttling": throttle_view(item.get("DefaultRouteSettings")),
        "route_throttling": {key: value for key, value in routes.items() if value},
        "access_log": (
            {"destination_arn": log["DestinationArn"], "format": log.get("Format")}
            if log.get("DestinationArn")
            else None
        ),
    }
