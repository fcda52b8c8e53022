"""Reports, plots and comparisons built from finished units of run directories."""
