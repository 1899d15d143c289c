"""Run a specification: read the data, call the public API, hand the results to the report.

No estimation logic lives here: every number comes from ``blpdemand``'s public functions.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

import blpdemand.instruments as instruments_package
from blpdemand.cli.bootstrap import check_bootstrap
from blpdemand.cli.compute import Compute, check_compute, executor_runner, opened
from blpdemand.cli.figures import can_fork
from blpdemand.cli.micro import micro_moments
from blpdemand.cli.post import (
    check_contour,
    check_merger,
    check_post_data,
    check_post_options,
    post_estimation,
)
from blpdemand.cli.report import (
    OutputFolder,
    Report,
    RichReporter,
    progress_runner,
)
from blpdemand.cli.spec import (
    Spec,
    check_keys,
    check_types,
    keyword_names,
    read_spec,
    read_table,
)
from blpdemand.errors import BLPDemandError, SpecificationError
from blpdemand.results.plots import ConvergencePlot

if TYPE_CHECKING:
    from blpdemand.cli import Interrupts

NOT_FROM_SPEC = {"runner", "executor"}  # EstimationConfig fields the command line sets itself


def run(command: str, spec_path: Path, *, output: Path | None, console: Console,
        progress: Console, quiet: bool = False, interrupts: Interrupts | None = None) -> Any:
    """Run ``blpdemand logit|estimate SPEC`` and return the live results.

    Everything the spec asks for is checked before the estimation; the outputs are written to
    a staging folder that replaces the output folder only at the end (``OutputFolder``)."""
    spec = read_spec(spec_path)
    if command == "logit" and spec.estimation:
        raise SpecificationError(f"[estimation] in {spec.path.name} configures the BLP estimator; "
                                 f"use [logit] with 'blpdemand logit', or run 'blpdemand estimate'")
    if command == "estimate" and spec.logit:
        raise SpecificationError(f"[logit] in {spec.path.name} configures the plain logit; "
                                 f"use [estimation] with 'blpdemand estimate'")
    if spec.post.get("stability", False) and not spec.integration:
        raise SpecificationError(f"[post] stability in {spec.path.name} re-estimates with more "
                                 f"draws of an integration rule: it needs [integration]")
    for key in ("profiles", "contour", "stability"):
        if spec.post.get(key, False) and command != "estimate":
            raise SpecificationError(f"[post] {key} in {spec.path.name} needs 'blpdemand "
                                     f"estimate' (the GMM objective of a BLP model)")
    check_bootstrap(spec, command)  # [post.bootstrap]: fail before the estimation
    check_post_options(spec)
    compute = check_compute(spec, command)  # [compute]: before a pool or cluster starts
    directory = output if output is not None else spec.output.get("directory")
    if directory is None:
        directory = Path.cwd() / f"{spec.path.stem}-results"
    folder = OutputFolder(Path(directory))
    report: Report | None = None
    try:  # from the staging folder's creation on, any failure or interrupt deletes it
        report = Report(console, folder.open(), latex=spec.output.get("latex", True),
                        html=spec.output.get("html", True), plots=spec.output.get("plots", True),
                        json=spec.output.get("json", True),
                        checkpoint=interrupts.check if interrupts is not None else None)
        shield = interrupts.shielded if interrupts is not None else nullcontext
        check = interrupts.check if interrupts is not None else (lambda: None)
        if report.plots and _many_figures(spec):
            report.prepare_figures()  # matplotlib loads beside the estimation
        with opened(compute, shield=shield, check=check) as executor:  # closed before the move
            results = _run(command, spec, report, progress=progress, quiet=quiet,
                           compute=compute, executor=executor)
        report.close()
        written = folder.commit(interrupts)
    except BaseException:
        if report is not None:
            report.close(abort=True)  # no figure is written into the folder after this
        folder.discard(interrupts)
        raise
    assert report is not None
    report.finish(folder.shown if written is not None else None)
    return results


def _many_figures(spec: Spec) -> bool:
    """Whether the run gains from a figure process (cli.figures). A fork of this process
    loads only matplotlib (0.3 s of another core) and draws while this one computes: every
    run with figures gains. A fresh interpreter costs 1.2 s of a core: on two cores it saves
    time only with the objective's contour or the draws-stability figures beside the rest
    (nevo.toml: 0.75 s), and costs 0.3-0.5 s for a convergence plot and a heatmap or two."""
    return can_fork() or any(spec.post.get(key, False) for key in ("contour", "stability"))


def _run(command: str, spec: Spec, report: Report, *, progress: Console, quiet: bool,
         compute: Compute | None = None, executor: Any = None) -> Any:
    """Read the data, estimate, run the post-estimation and write results.json into ``report``
    (the starts on ``executor`` when ``[compute]`` started one, else on ``compute``'s threads)."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        products = read_table(spec.data["products"], f"[data] products in {spec.path.name}")
        spec, products = _rename_clustering_ids(spec, products)
        check_merger(spec, products)  # [post.merger] names firms of the data: before estimating
        check_post_data(spec, products)  # [post] market, costs' firm ids: likewise
        agents = (agent_markets(spec, read_table(spec.data["agents"],
                                                 f"[data] agents in {spec.path.name}"))
                  if "agents" in spec.data else None)
        instruments = build_instruments(spec, products, agents)
        refit: dict[str, Any] = {}
        if command == "logit":
            results = _logit(spec, products, instruments)
            if spec.comparison:
                report.table("comparison", _comparison(spec, products, instruments, results))
        else:
            if spec.comparison:
                raise SpecificationError(f"[comparison] in {spec.path.name} compares logit "
                                         "models: use 'blpdemand logit'")
            results, evaluations, refit = _blp(spec, products, agents, instruments,
                                               console=progress, quiet=quiet,
                                               checkpoint=report.checkpoint,
                                               compute=compute, executor=executor)
            if evaluations:
                report.figure("convergence", ConvergencePlot(evaluations))
        report.table("summary", results.summary())
        if getattr(results, "micro", None) is not None:
            report.table("micro", results.micro_moments())
        if getattr(results, "first_stage", None) is not None:
            report.table("first_stage", results.first_stage_table())
        if len(getattr(results, "starts", ())) > 1:
            report.table("starts", results.starts_table())
        post = post_estimation(spec, results, report, products, refit=refit,
                               runner=progress_runner(progress, "post-estimation",
                                                      checkpoint=report.checkpoint)
                               if not quiet else _checked(report.checkpoint))
        report.wait_figures()  # their warnings are caught here with the others
        for w in records:  # library maintenance notices are not the user's business
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                           FutureWarning)):
                caught.append(f"{w.category.__name__}: {w.message}")
    for line in dict.fromkeys(caught):
        progress.print(f"warning: {line}", style="yellow", highlight=False)
    post["warnings"] = list(dict.fromkeys(caught))
    record = {"file": str(spec.path.resolve()), "command": command,
              "data": {k: str(v) for k, v in spec.data.items()}, "toml": spec.raw}
    report.save(results, spec=record, post_estimation=post)
    return results


def _rename_clustering_ids(spec: Spec, products: pd.DataFrame) -> tuple[Spec, pd.DataFrame]:
    """``[columns] clustering_ids = "col"``: the library's ``columns=`` maps only the product
    keys, so the CLI renames the column itself (then ``clusters = "clustering_ids"`` works)."""
    source = spec.columns.get("clustering_ids")
    if source is None:
        return spec, products
    if source not in products.columns:
        raise SpecificationError(f"[columns] clustering_ids in {spec.path.name} names column "
                                 f"'{source}', which the products file lacks")
    if source != "clustering_ids" and "clustering_ids" in products.columns:
        raise SpecificationError(f"[columns] clustering_ids in {spec.path.name} maps '{source}' "
                                 f"but the products file already has a 'clustering_ids' column; "
                                 f"drop one of them")
    columns = {k: v for k, v in spec.columns.items() if k != "clustering_ids"}
    return (dataclasses.replace(spec, columns=columns),
            products.rename(columns={source: "clustering_ids"}))


def agent_markets(spec: Spec, agents: pd.DataFrame) -> pd.DataFrame:
    """``[columns] market_ids = "year"`` names the market column of the agent files too (the
    library maps product columns only): rename it when the agents have no market_ids."""
    source = spec.columns.get("market_ids")
    if source is None or "market_ids" in agents.columns or source not in agents.columns:
        return agents
    return agents.rename(columns={source: "market_ids"})


def builders() -> dict[str, Callable[..., pd.DataFrame]]:
    """Instrument builders by kind: ``build_{kind}_instruments`` (or ``build_{kind}``), every
    public ``build_*`` function of the ``blpdemand.instruments`` modules."""
    out = {}
    for info in sorted(pkgutil.iter_modules(instruments_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{instruments_package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if (name.startswith("build_") and inspect.isfunction(value)
                    and value.__module__ == module.__name__):
                out[name.removeprefix("build_").removesuffix("_instruments")] = value
    return dict(sorted(out.items()))


def build_instruments(spec: Spec, products: pd.DataFrame, agents: pd.DataFrame | None) -> list[Any]:
    """Excluded instruments: named columns, then each ``[[instruments.build]]`` block's output."""
    items: list[Any] = list(spec.instruments.get("columns", []))
    available = builders()
    for k, options in enumerate(spec.instruments.get("build", [])):
        options = dict(options)
        kind = options.pop("kind")
        where = f"[[instruments.build]] entry {k + 1} (kind = \"{kind}\")"
        if kind not in available:
            raise SpecificationError(f"unknown instrument builder kind '{kind}' in {where} of "
                                     f"{spec.path.name}; valid: {', '.join(sorted(available))}")
        build = available[kind]
        params = inspect.signature(build).parameters
        valid = tuple(n for n in keyword_names(build) if n not in ("products", "agents"))
        check_keys(options, valid, where, spec.path.name)
        missing = [p.name for p in params.values() if p.default is p.empty
                   and p.name not in ("products", "agents") and p.name not in options
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if missing:
            raise SpecificationError(f"{where} in {spec.path.name} needs {', '.join(missing)}")
        if spec.columns and "columns" in params and "columns" not in options:
            options["columns"] = spec.columns
        args: list[Any] = [products]
        if "agents" in params:
            if agents is None:
                raise SpecificationError(f"{where} in {spec.path.name} needs agent data; "
                                         f"add agents = \"...\" to [data]")
            args.append(agents)
        items.append(build(*args, **options))
    return items


def _logit(spec: Spec, products: pd.DataFrame, instruments: list[Any]) -> Any:
    from blpdemand.results.logit import estimate_logit

    model = spec.model
    for key in ("nonlinear", "demographics", "lognormal"):
        if key in model:
            raise SpecificationError(f"[model] {key} in {spec.path.name} needs 'blpdemand "
                                     f"estimate' (random coefficients); 'logit' uses linear only")
    kwargs: dict[str, Any] = {"linear": model["linear"]}
    for key in ("absorb", "endogenous", "nesting", "rho"):
        if key in model:
            kwargs[key] = model[key]
    if instruments:
        kwargs["instruments"] = instruments
    if spec.columns:
        kwargs["columns"] = spec.columns
    valid = tuple(n for n in keyword_names(estimate_logit) if n not in kwargs and n != "products")
    check_keys(spec.logit, valid, "[logit]", spec.path.name)
    check_types(spec.logit, estimate_logit, "[logit]", spec.path.name)
    return estimate_logit(products, **kwargs, **spec.logit)


def _comparison(spec: Spec, products: pd.DataFrame, instruments: list[Any],
                results: Any) -> Any:
    """The spec's model beside each [[comparison.models]] variant, as one regression table
    (``bd.regression_table``): a variant changes the formula, effects, instruments, method or
    standard errors of the spec's model and keeps the rest."""
    from blpdemand.results.comparison import regression_table
    from blpdemand.results.logit import estimate_logit

    section = spec.comparison
    models = {section.get("label", "model"): results}
    base: dict[str, Any] = {"linear": spec.model["linear"], **spec.logit}
    for key in ("absorb", "endogenous"):
        if key in spec.model:
            base[key] = spec.model[key]
    if instruments:
        base["instruments"] = instruments
    if spec.columns:
        base["columns"] = spec.columns
    for variant in section.get("models", []):
        kwargs = {**base, **{k: v for k, v in variant.items() if k != "label"}}
        if kwargs.get("method") == "ols" or kwargs.get("instruments") == []:
            kwargs.pop("instruments", None)
        models[variant["label"]] = estimate_logit(products, **kwargs)
    return regression_table(models, parameters=section.get("parameters"),
                            title=section.get("title", "Estimates side by side"))


def _checked(checkpoint: Callable[[], None]) -> Callable[[list[Callable[[], Any]]], list[Any]]:
    """The post-estimation steps one after another, ``checkpoint`` before each (no bar)."""
    def run(jobs: list[Callable[[], Any]]) -> list[Any]:
        out = []
        for job in jobs:
            checkpoint()
            out.append(job())
        return out
    return run


def _blp(spec: Spec, products: pd.DataFrame, agents: pd.DataFrame | None, instruments: list[Any],
         *, console: Console, quiet: bool, checkpoint: Callable[[], None] | None = None,
         compute: Compute | None = None, executor: Any = None) -> Any:
    from blpdemand.integration.rule import Integration
    from blpdemand.results.blp import estimate
    from blpdemand.solve.estimate import EstimationConfig

    model = spec.model
    if "nonlinear" not in model:
        raise SpecificationError(f"[model] nonlinear is missing in {spec.path.name}; 'estimate' "
                                 f"needs random coefficients (or run 'blpdemand logit')")
    agent_source: Any = agents
    if spec.integration:
        if agents is not None and "demographics_data" not in spec.integration:
            options = {"demographics_data": agents, **spec.integration}
        else:
            options = dict(spec.integration)
        if isinstance(options.get("demographics_data"), Path):
            options["demographics_data"] = agent_markets(spec, read_table(
                options["demographics_data"], f"[integration] in {spec.path.name}"))
        check_keys(options, keyword_names(Integration), "[integration]", spec.path.name)
        check_types(options, Integration, "[integration]", spec.path.name)
        if "kind" not in options or "size" not in options:
            raise SpecificationError(f"[integration] in {spec.path.name} needs kind and size, "
                                     f"e.g. kind = \"sobol\", size = 200")
        try:
            agent_source = Integration(options.pop("kind"), options.pop("size"), **options)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BLPDemandError):
                raise
            raise SpecificationError(f"[integration] in {spec.path.name}: {exc}") from None
    kwargs: dict[str, Any] = {k: model[k] for k in
                              ("linear", "nonlinear", "demographics", "absorb", "endogenous",
                               "lognormal", "nesting", "rho")
                              if k in model}

    kwargs.update(spec.supply)  # [supply]: formula, instruments, costs, conduct, bounds
    if spec.micro:  # [[micro]]: survey statistics as micro moments (cli.micro)
        kwargs["micro"] = micro_moments(spec.micro, spec.data.get("micro"), spec.path.name)

    # picklable: [post] stability re-estimates with it on [compute]'s workers
    make_problem = functools.partial(build_problem, products, instruments or None,
                                     spec.columns or None, kwargs)

    problem = make_problem(agent_source)
    valid = tuple(n for n in keyword_names(EstimationConfig) if n not in NOT_FROM_SPEC)
    check_keys(spec.estimation, valid, "[estimation]", spec.path.name)
    check_types(spec.estimation, EstimationConfig, "[estimation]", spec.path.name)
    options = dict(spec.estimation)
    if "bounds" in options:
        options["bounds"] = {k: tuple(v) for k, v in dict(options["bounds"]).items()}
    if compute is not None and compute.scheduler == "threads":
        options["workers"] = compute.workers
    config = EstimationConfig(**options)  # validates workers before the runner uses it
    if config.shards is not None and executor is not None:  # shards live on [compute]'s workers
        config = dataclasses.replace(config, executor=executor)
    reporter = RichReporter(console, quiet=quiet, checkpoint=checkpoint)
    if executor is not None:  # the starts as jobs there; their rows shown here as they finish
        assert compute is not None
        runner = executor_runner(executor, console=console, scheduler=compute.scheduler,
                                 reporter=reporter, checkpoint=checkpoint)
    else:
        runner = progress_runner(console, "multi-start", workers=config.workers,
                                 checkpoint=checkpoint)
    config = dataclasses.replace(config, runner=runner)
    layout, _ = problem.layout(spec.parameters.get("sigma"), spec.parameters.get("pi"),
                               spec.parameters.get("rho"))
    check_contour(spec, layout.names)  # [post] contour names parameters of the model: before
    results = estimate(problem, sigma=spec.parameters.get("sigma"), pi=spec.parameters.get("pi"),
                       rho=spec.parameters.get("rho"), config=config, reporter=reporter)
    refit = {"integration": agent_source, "make_problem": make_problem}
    return results, reporter.records, refit


def build_problem(products: Any, instruments: Any, columns: Any, kwargs: dict[str, Any],
                  source: Any) -> Any:
    """The spec's Problem with agents (or an integration rule) ``source``."""
    from blpdemand.model.problem import Problem

    return Problem(products, agents=source, instruments=instruments, columns=columns, **kwargs)


def run_command(args: Any, *, interrupts: Interrupts | None = None) -> int:
    """Run a spec command; any error becomes one line on stderr and exit status 2 (1 if a bug).
    An interrupt propagates as KeyboardInterrupt (``blpdemand.cli.main`` reports it), also when
    an exception came from it or after it (``interrupts``: SIGINT seen, even if swallowed)."""
    import sys

    wide = None if sys.stdout.isatty() else 120
    # markup off: parameter names such as "sigma[prices, prices]" are not rich markup tags
    console = Console(width=wide, highlight=False, markup=False)
    progress = Console(stderr=True, width=None if sys.stderr.isatty() else 120, highlight=False,
                       markup=False)
    try:
        run(args.command, args.spec, output=args.output, console=console, progress=progress,
            quiet=args.quiet, interrupts=interrupts)
    except Exception as exc:
        if interrupts is not None and interrupts.caused(exc):  # numba's SystemError, or after
            raise KeyboardInterrupt from exc
        if args.traceback:
            raise
        if isinstance(exc, (BLPDemandError, OSError)):
            print(f"blpdemand {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        # a bug: still one line unless --traceback
        print(f"blpdemand {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(rerun with --traceback and report it)", file=sys.stderr)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    """The message and its notes (e.g. which start of which GMM step raised it) on one line."""
    text = " ".join([str(exc), *(str(n) for n in getattr(exc, "__notes__", ()))])
    return " ".join(text.split()) or type(exc).__name__
