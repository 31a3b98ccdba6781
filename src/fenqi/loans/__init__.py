"""A loan as the services and the batch work with it (the ``Loan`` aggregate), how a change to
it is worked out (``book``), and the ports through which they get and save loans (``Loans``,
``UnitOfWork``). The store implements the ports; nothing here knows a table or a session."""
