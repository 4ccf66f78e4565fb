"""A static HTML report of a profile's runs: open ``runs/<profile>/report/index.html``.

    python -m rewards_as_labels.tools.report --profile tiny [--run runs/tiny+model]

Reads what ``make reproduce`` left in the run folder and writes ``<run>/report/``:

- ``notebooks/<name>.html``: every executed notebook of ``<run>/notebooks/`` (nbconvert's lab
  template; their figures are already inside them). ``*.FAILED.ipynb`` copies are listed apart.
- ``tables/<name>.html``: every ``<run>/tables/*.csv`` as an HTML table (shown on the index
  too when it has at most ``INLINE_ROWS`` rows).
- ``index.html``: links to each of them, and each figure of ``<run>/figures/`` shown inline and
  linked (with its PDF where there is one). Figures are referenced, not copied
  (``../figures/...``), so the report stays next to the run folder it describes.

The folder is written under a temporary name and renamed when complete (``io.atomic_directory``),
so an interrupted build never leaves half a report. Nothing is recomputed: the report only reads.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import pandas as pd

from ..io import atomic_directory, atomic_write_text

STYLE = """body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
figure{display:inline-block;margin:0 1rem 1rem 0;max-width:32rem;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9rem}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
.failed{color:#a00}"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _link(href: str, text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<li><a{attr} href="{html.escape(href)}">{html.escape(text)}</a></li>'


def notebook_html(path: Path) -> str:
    """One executed notebook as a standalone HTML page (nbconvert, lab template)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(path, as_version=4))
    return body


INLINE_ROWS = 30  # tables up to this long are also shown on the index page itself


def read_table(path: Path) -> pd.DataFrame:
    """A CSV table with every cell as written (no float reformatting, empty cells stay empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def table_html(path: Path) -> str:
    """A CSV table as an HTML page."""
    return _page(
        path.stem,
        f"<h1>{html.escape(path.stem)}</h1>\n<p>from <code>{html.escape(path.name)}</code></p>\n"
        + read_table(path).to_html(index=False, border=0, escape=True),
    )


def build_report(run: str | Path) -> Path:
    """Write ``<run>/report/`` (index.html, notebooks/, tables/) and return the index's path."""
    run = Path(run)
    notebooks = sorted(p for p in (run / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
    tables = sorted((run / "tables").glob("*.csv"))
    figures = sorted((run / "figures").rglob("*.png"))
    if not (notebooks or tables or figures):
        raise SystemExit(
            f"\nnothing to report in {run}: no notebooks/*.ipynb, tables/*.csv or figures/*.png there; "
            f"run `make reproduce` (PROFILE=...) first, or pass the run folder with --run\n"
        )
    done = [p for p in notebooks if not p.stem.endswith(".FAILED")]
    failed = [p for p in notebooks if p.stem.endswith(".FAILED")]
    sections = [
        f"<h1>Rewards as Labels: {html.escape(run.name)}</h1>",
        f"<p>Run folder <code>{html.escape(str(run))}</code>. Every page below was rendered from files "
        "there; nothing was recomputed.</p>",
    ]
    with atomic_directory(run / "report") as out:
        (out / "notebooks").mkdir()
        (out / "tables").mkdir()
        for nb in notebooks:
            atomic_write_text(out / "notebooks" / f"{nb.stem}.html", notebook_html(nb))
        if done:
            sections += [
                "<h2>Notebooks (executed)</h2>",
                "<ul>",
                *[_link(f"notebooks/{nb.stem}.html", nb.stem) for nb in done],
                "</ul>",
            ]
        if failed:
            sections += [
                '<h2 class="failed">Notebooks that failed (executed up to the error)</h2>',
                "<ul>",
                *[_link(f"notebooks/{nb.stem}.html", nb.stem, "failed") for nb in failed],
                "</ul>",
            ]
        if tables:
            sections.append("<h2>Tables</h2>")
            for table in tables:
                atomic_write_text(out / "tables" / f"{table.stem}.html", table_html(table))
                frame = read_table(table)
                sections.append(
                    f'<h3><a href="tables/{html.escape(table.stem)}.html">{html.escape(table.stem)}</a> '
                    f"({len(frame)} rows)</h3>"
                )
                if len(frame) <= INLINE_ROWS:
                    sections.append(frame.to_html(index=False, border=0, escape=True))
        if figures:
            sections.append("<h2>Figures</h2>")
            for png in figures:
                name = png.relative_to(run / "figures").with_suffix("").as_posix()
                href = html.escape(f"../figures/{png.relative_to(run / 'figures').as_posix()}")
                pdf = png.with_suffix(".pdf")
                pdf_link = (
                    f' (<a href="{html.escape("../figures/" + pdf.relative_to(run / "figures").as_posix())}">pdf</a>)'
                    if pdf.is_file()
                    else ""
                )
                sections.append(
                    f'<figure><a href="{href}"><img src="{href}" alt="{html.escape(name)}"></a>'
                    f"<figcaption>{html.escape(name)}{pdf_link}</figcaption></figure>"
                )
        atomic_write_text(out / "index.html", _page(f"Rewards as Labels: {run.name}", "\n".join(sections)))
    return run / "report" / "index.html"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny", help="the run folder is runs/<profile> unless --run is given")
    parser.add_argument("--run", default="", help="the run folder (make passes runs/<profile>+<model>+<data>)")
    args = parser.parse_args(argv)
    index = build_report(args.run or Path("runs") / args.profile)
    print(f"report: open {index}")


if __name__ == "__main__":
    main()
