"""Guard rails: what the budget's Lambdas run (outside any VPC), and what the CLI shares with
them: the budget's notification (`notification`), the budget killer (`killer`), Cost
Explorer's figures and the month's projection (`costs`), the daily cost mail (`summary`)."""
