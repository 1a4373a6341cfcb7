"""Templates of the customer self-service page (a package so the HTML ships in wheels)."""
