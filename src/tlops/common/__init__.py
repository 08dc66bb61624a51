"""What every deployable shares besides the job contract: the one boto3 client factory
(`aws`) and the log and metric line format (`telemetry`)."""
