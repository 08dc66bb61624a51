"""What the operator's machine builds from the checkout: Lambda zips and the route table."""
