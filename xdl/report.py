"""Evaluation reports: the table ``xdl evaluate`` prints and the metrics file it writes."""

from __future__ import annotations

__all__ = ["format_report", "save_report"]


def _uncertainty_columns(report) -> list[str]:
    from .metrics import UNCERTAINTY

    return [k for k in UNCERTAINTY if k in report.data_vars]


def format_report(report) -> str:
    """A plain-text table of an :func:`xdl.evaluate.evaluate` report, one block per variable/gaps;
    with the sigma scores (coverage within 1 and 2 sigma, spread/skill, CRPS and the CRPS of a
    constant sigma, sigma_skill and tail_ratio) when the model gives one."""
    context = report.attrs.get("context") or ""
    window = report.attrs.get("time_window") or 0
    extra = f"   context: {context or '-'}   time_window: {window}" if context or window else ""
    lines = [f"model: {report.attrs.get('model')}   seed: {report.attrs.get('seed')}   "
             f"fraction: {report.attrs.get('fraction')}{extra}   (scores on hidden valid pixels only)"]
    sig = _uncertainty_columns(report)
    head = f"  {'method':<17}{'rmse':>11}{'mae':>11}{'bias':>11}{'corr':>8}{'std_ratio':>10}{'n':>10}{'seconds':>9}"
    if sig:
        head += f"{'cov1':>7}{'cov2':>7}{'spread':>8}{'crps':>10}{'crps_c':>10}"
        head += f"{'skill':>7}{'tails':>7}" if "sigma_skill" in sig else ""
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
                row = (f"  {str(m):<17}{float(r.rmse):>11.4g}{float(r.mae):>11.4g}{float(r.bias):>11.3g}"
                       f"{float(r.corr):>8.3f}{float(r.std_ratio):>10.3f}{int(r.n):>10d}{float(r.seconds):>9.3f}")
                if sig and m == "model":
                    row += (f"{float(r.coverage1):>7.3f}{float(r.coverage2):>7.3f}{float(r.spread_skill):>8.3f}"
                            f"{float(r.crps):>10.4g}{float(r.crps_const):>10.4g}")
                    if "sigma_skill" in sig:  # reports saved before these scores existed lack them
                        row += f"{float(r.sigma_skill):>7.2f}{float(r.tail_ratio):>7.2f}"
                lines.append(row)
    return "\n".join(lines)


def save_report(report, path: str) -> None:
    """Write the report's metrics to ``path``: a ``.csv`` table, otherwise netCDF (the whole report)."""
    from .evaluate import METRICS

    from .io.files import replace_atomically

    # Renamed into place: a failed write leaves no empty file at ``path`` (nor loses an old one).
    with replace_atomically(path) as tmp:
        if path.lower().endswith(".csv"):
            report[list(METRICS) + _uncertainty_columns(report)].to_dataframe().to_csv(tmp)
        else:
            report.to_netcdf(tmp)
