"""What proves, on the operator's machine, what the stand-in cannot: that each component's
network paths exist in the deployed VPC (`paths`) and that its role allows exactly the
calls it makes (`access`). Both read the one declaration, access.yml."""
