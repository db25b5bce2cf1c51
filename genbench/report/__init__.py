"""Reports: benchmark records -> pandas tables -> plotly figures -> one offline HTML page."""

from genbench.report.figures import fid_vs_nfe_figures, fid_vs_time_figures, report_figures
from genbench.report.html import make_report, write_report
from genbench.report.tables import RecordWarning, load_records, summary_table

__all__ = [
    "RecordWarning",
    "fid_vs_nfe_figures",
    "fid_vs_time_figures",
    "load_records",
    "make_report",
    "report_figures",
    "summary_table",
    "write_report",
]
