"""FaceParse Studio's benchmarks, run from the project root as ``python -m bench.<script>``.

Scripts (each has ``main`` and ``--help``; the README's Benchmarks table says what each measures):
    bench_presets, bench_canvas, bench_responsiveness, bench_speed    timings (issues 2-5)
    study, probe_finetune, k10_subsets, ssl_length, stage1_data      label efficiency (issue 5)
    build_starters, app_finetune                                     the starter models, the app
    plot_study, plot_finetune_length, plot_stage1_length, plot_lpft,
    plot_stage1_budget, plot_k10_curves                              tables and plots of results
    study_gpu.sh                                                     the same on a lent GPU

What they share:
    harness        paths (bench/out, bench/results/<experiment>, ../shared/data), done markers,
                   JSON lines with one envelope, the results manifest, the machine record (with
                   the CPU's ISA), the command line, the base argument parser, timing
    recipes        the study's settings (StudySettings) and stage-1 folder tags
    faces          the study's data stage and named views of samples
    stage1         cached, resumable stage-1 runs
    finetunes      the study's arms, cached fine-tunes, scoring, scheduling
    study_results  the study's results file and summary
    runs           fine-tune runs across result files by stage-1 and fine-tune length
    stats          the paired lead's intervals
    plotting       writing figures; signed numbers; lead bars against the targets
    speed_training bench_speed's training-throughput and profile sections

Findings: BENCHMARKS.md; the dated research log: docs/research-log.md.
"""
