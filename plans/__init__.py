"""Plans: the staged adoption plan and the stage lifecycle — a layer above the features the plan orders.

Layers, one way: planner <- features <- plans <- state <- app (each imports only those to its left)."""
