from pyfunc_ensembler.cli import program

program()
