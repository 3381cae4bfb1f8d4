"""Layout copies shared by the operator families (launch_transpose)."""
