"""Reports: benchmark records -> pandas tables -> plotly figures -> one offline HTML page."""

from genbench.report.experiment import summary_text, write_experiment_report
from genbench.report.figures import (
    fid_vs_gmacs_figures,
    fid_vs_time_figures,
    recall_vs_fid_figures,
    report_figures,
    report_panels,
)
from genbench.report.html import write_report
from genbench.report.paper import PaperWarning, paper_points
from genbench.report.paper_tables import table2, table3
from genbench.report.tables import RecordWarning, load_records, summary_table

__all__ = [
    "PaperWarning",
    "RecordWarning",
    "fid_vs_gmacs_figures",
    "fid_vs_time_figures",
    "load_records",
    "paper_points",
    "recall_vs_fid_figures",
    "report_figures",
    "report_panels",
    "summary_table",
    "summary_text",
    "table2",
    "table3",
    "write_experiment_report",
    "write_report",
]
