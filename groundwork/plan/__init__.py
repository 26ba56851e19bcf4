"""``groundwork plan``: a stack's resources, policy verdicts and monthly cost, offline.

program.py loads the stack config and runs the real program under mocks,
inventory.py groups the graph by component, pricing/ prices it from prices.yaml,
policy.py adapts the CrossGuard verdicts, report.py/render.py present the result and
costdiff.py compares two plans.
"""
