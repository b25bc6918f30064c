import click


@click.group()
def main():
    """pmip6ctl"""
