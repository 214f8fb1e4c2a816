"""Drop-in for Turing's ``pyfunc_ensembler_runner``: same flags, served by pyfunc-ensembler."""
