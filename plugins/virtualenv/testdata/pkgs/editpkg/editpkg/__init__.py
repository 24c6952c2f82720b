VALUE = "editable"
