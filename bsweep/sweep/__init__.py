"""Running a study: plan and validate, hand the grid to Hydra, watch progress, schedule fused
chunks over workers and backends, bracket the lr, bench step times, reproduce the claims."""
