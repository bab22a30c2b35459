"""The dashboard's pages, one module each: `layout(**query)` builds the page, its callbacks render the content."""
