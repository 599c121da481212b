"""seekmesh's data-analysis assistant: a question in plain language becomes
SQL (written by a model through the gateway), a result table and a chart."""
