"""rankdistill."""
