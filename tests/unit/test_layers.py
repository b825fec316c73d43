"""The house as drawn (docs/ARCHITECTURE.md): no import circles among the harness's
modules. The layers themselves are import-linter's contracts in pyproject.toml, which
`make lint` checks."""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("harness")
    circles = {
        tuple(sorted((module, imported)))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    }
    assert len(graph.modules) > 80 and circles == set()
