"""Evaluation reports: the table ``xdl evaluate`` prints and the metrics file it writes."""

from __future__ import annotations

__all__ = ["format_report", "save_report"]


def format_report(report) -> str:
    """A plain-text table of an :func:`xdl.evaluate.evaluate` report, one block per variable/gaps."""
    lines = [f"model: {report.attrs.get('model')}   seed: {report.attrs.get('seed')}   "
             f"fraction: {report.attrs.get('fraction')}   (scores on hidden valid pixels only)"]
    head = f"  {'method':<12}{'rmse':>11}{'mae':>11}{'bias':>11}{'corr':>8}{'std_ratio':>10}{'n':>10}{'seconds':>9}"
    for v in report["variable"].values:
        units = str(report["units"].sel(variable=v).item()) if "units" in report.coords else ""
        for g in report["gaps"].values:
            share = float(report["hidden_share"].sel(variable=v, gaps=g)) if "hidden_share" in report.coords else float("nan")
            lines.append("")
            lines.append(f"{v}{f' [{units}]' if units else ''}  gaps={g}  hidden={share:.1%}")
            lines.append(head)
            sub = report.sel(variable=v, gaps=g)
            for m in report["method"].values:
                r = sub.sel({"method": m})
                lines.append(f"  {str(m):<12}{float(r.rmse):>11.4g}{float(r.mae):>11.4g}{float(r.bias):>11.3g}"
                             f"{float(r.corr):>8.3f}{float(r.std_ratio):>10.3f}{int(r.n):>10d}{float(r.seconds):>9.3f}")
    return "\n".join(lines)


def save_report(report, path: str) -> None:
    """Write the report's metrics to ``path``: a ``.csv`` table, otherwise netCDF (the whole report)."""
    from .evaluate import METRICS

    if path.lower().endswith(".csv"):
        report[list(METRICS)].to_dataframe().to_csv(path)
    else:
        report.to_netcdf(path)
