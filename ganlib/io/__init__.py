"""Files and processes: atomic writes, DVC's command line, provenance of a dataset version and of code, child processes.

    atomic.py          files and directories written whole or not at all
    dvc_cli.py         running `dvc` and reading its JSON
    provenance.py      the dataset version (md5 in data.dvc) a result came from
    logged_command.py  a child process whose output goes to the run log
    source.py          the project files a module runs (static import closure) and their digest
"""
