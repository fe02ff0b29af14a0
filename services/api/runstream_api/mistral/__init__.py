"""OpenStack Mistral v2 executions facade over runs and scenarios."""
