"""One module per ``datagen`` command, each with ``HELP``, ``add_arguments(parser)`` and
``cli(args)``: arguments and the call into the library, nothing else. The modules import nothing
heavy at the top, so that building the parser (``datagen --help``) never loads torch."""

COMMANDS = (  # name, module, in the order of a pipeline
    ("self-instruct", "datagen.commands.self_instruct"),
    ("evolve", "datagen.commands.evolve"),
    ("distill", "datagen.commands.distill"),
    ("convert", "datagen.commands.convert"),
    ("filter", "datagen.commands.filter"),
    ("select", "datagen.commands.select"),
    ("report", "datagen.commands.report"),
    ("ablate", "datagen.commands.ablate"),
)
