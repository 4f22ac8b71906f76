"""Templates: the catalog of templates (catalog), rendering (render), hooks, the
value filters (filters), the checks template authors run (check, hostile_values)
and the Backstage form generator (backstage)."""
