"""HTTP API blueprints, one per resource."""
